#!/usr/bin/perl
# SharedArea::remove($name): the name goes at once, a process that has the
# area keeps its memory, a later name= creates a new area; what is not an
# area is never removed; every failure dies naming the function and the name.
use strict;
use warnings;
use Test::More;

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea;

alarm 60;

my $name = sprintf 'satest27-%d-%d', $$, int(rand 1e9);
my $shm  = "/dev/shm/$name";
my $foreign = "/dev/shm/$name-foreign";
END { unlink grep { defined } $shm, $foreign }

my $id = SharedArea::init("name=$name,size=4096");
uwsgi::sharedarea_write($id, 0, 'kept');
ok(-e $shm, "the area lives in $shm");

# A forked child attaches by name before the removal and keeps working after.
pipe(my $r, my $w) or die "pipe: $!";
pipe(my $r2, my $w2) or die "pipe: $!";
my $pid = fork // die "fork: $!";
if (!$pid) {
    close $r; close $w2;
    my $cid = SharedArea::init("name=$name");
    syswrite $w, "attached\n";
    my $go = <$r2>;              # removed meanwhile
    my $v = eval { uwsgi::sharedarea_inc64($cid, 8, 3) } // -1;
    syswrite $w, "inc $v\n";
    POSIX::_exit(0);
}
close $w; close $r2;
require POSIX;
is(scalar <$r>, "attached\n", 'a child attached by name');

is(SharedArea::remove($name), 1, 'remove returns 1');
ok(!-e $shm, 'the name is gone from /dev/shm');
syswrite $w2, "go\n";
is(scalar <$r>, "inc 3\n", 'the attached child keeps using the area after the removal');
waitpid $pid, 0;
is(uwsgi::sharedarea_read($id, 0, 4), 'kept', 'this process still reads its bytes');
is(uwsgi::sharedarea_read64($id, 8), 3, "and sees the child's increment (same memory)");

ok(!eval { SharedArea::init("name=$name"); 1 }, 'attaching by name now fails');
my $new = SharedArea::init("name=/$name,size=4096");
is(uwsgi::sharedarea_read($new, 0, 4), "\0" x 4, 'name= with a size creates a new, empty area');
is(SharedArea::remove("/$name"), 1, 'a leading / is accepted');

# Failures die naming the function and the cause, and remove nothing.
ok(!eval { SharedArea::remove($name); 1 }, 'removing a missing name dies');
like($@, qr/^SharedArea::remove: no area named "\Q$name\E"/, '... naming the function and the name');

open my $fh, '>', $foreign or die "$foreign: $!";
print {$fh} "x" x (1 << 20);    # larger than any control block: refused for its header
close $fh;
ok(!eval { SharedArea::remove("$name-foreign"); 1 }, "another program's shared memory is not removed");
like($@, qr/^SharedArea::remove: .*not a sharedarea/, '... and says why');
ok(-e $foreign, '... and it is still there');

for my $bad ('', 'a/b', '..') {
    ok(!eval { SharedArea::remove($bad); 1 }, "remove('$bad') dies");
    like($@, qr/^SharedArea::remove: .*not an area name/, '... saying it is not a name');
}
ok(!eval { SharedArea::remove(); 1 }, 'remove() without a name dies');
like($@, qr/^Usage: SharedArea::remove\(name\)/, '... with the usage');
ok(!eval { SharedArea::remove("a\0b"); 1 }, 'a name with a NUL dies');
like($@, qr/NUL/, '... saying so');

done_testing;
