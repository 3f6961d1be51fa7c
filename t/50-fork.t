# Forked children share their parent's areas: counters updated by several
# processes at once come out exact.
use strict;
use warnings;
use Test::More;
use POSIX ();

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea;

alarm 300;

my $id   = SharedArea::init('1');
my $size = SharedArea::info($id)->{size};

# Runs CODE in N children at once; returns their exit statuses.
sub in_children {
    my ($n, $code) = @_;
    my @pids;
    for my $k (1 .. $n) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $ok = eval { $code->($k); 1 };
            print STDERR "child $k: $@" unless $ok;
            POSIX::_exit($ok ? 0 : 1);
        }
        push @pids, $pid;
    }
    return map { waitpid($_, 0); $? } @pids;
}

my @st = in_children(1, sub { uwsgi::sharedarea_write($id, 0, 'from the child') });
is_deeply(\@st, [0], 'a child writes');
is(uwsgi::sharedarea_read($id, 0, 14), 'from the child', '... and the parent sees it');

# 4 children x 20000 increments, aligned and unaligned, every width
my %spots = (inc64 => 64, inc64u => 73, inc32 => 128, inc32u => 133, dec64 => 200, inc16 => 256, inc8 => 300);
uwsgi::sharedarea_write($id, 0, "\0" x 400);
my $updates = SharedArea::updates($id);
@st = in_children(4, sub {
    for (1 .. 20_000) {
        uwsgi::sharedarea_inc64($id, $spots{inc64});
        uwsgi::sharedarea_inc64($id, $spots{inc64u}, 3);
        uwsgi::sharedarea_inc32($id, $spots{inc32});
        uwsgi::sharedarea_inc32($id, $spots{inc32u});
        uwsgi::sharedarea_dec64($id, $spots{dec64}, 2);
        uwsgi::sharedarea_inc16($id, $spots{inc16});
        uwsgi::sharedarea_inc8($id, $spots{inc8});
    }
});
is_deeply(\@st, [0, 0, 0, 0], 'four children ran');
is(uwsgi::sharedarea_read64($id, $spots{inc64}), 80_000, '4 x 20000 inc64 = 80000 exactly');
is(uwsgi::sharedarea_read64($id, $spots{inc64u}), 240_000, '4 x 20000 inc64 by 3 at an unaligned position');
is(uwsgi::sharedarea_read32($id, $spots{inc32}), 80_000, 'inc32');
is(uwsgi::sharedarea_read32($id, $spots{inc32u}), 80_000, 'inc32 at an unaligned position');
is(uwsgi::sharedarea_read64($id, $spots{dec64}), -160_000, 'dec64 by 2');
is(uwsgi::sharedarea_read16($id, $spots{inc16}), 80_000 - 65_536, 'inc16 wraps exactly');
is(uwsgi::sharedarea_read8($id, $spots{inc8}), (80_000 % 256) - 256, 'inc8 wraps exactly');
is(SharedArea::updates($id), $updates + 4 * 20_000 * 7, 'every increment counted one update');

# a read-modify-write made atomic with the write lock
uwsgi::sharedarea_write64($id, 512, 0);
@st = in_children(4, sub {
    for (1 .. 2_000) {
        uwsgi::sharedarea_wlock($id);
        my $v = uwsgi::sharedarea_read64($id, 512);
        uwsgi::sharedarea_write64($id, 512, $v + 1);
        uwsgi::sharedarea_unlock($id);
    }
});
is_deeply(\@st, [0, 0, 0, 0], 'four children ran wlock/read/write/unlock');
is(uwsgi::sharedarea_read64($id, 512), 8_000, 'no update was lost');

# string writes by one process are never seen torn by a reader
@st = in_children(2, sub {
    my $k = shift;
    if ($k == 1) {
        for my $i (1 .. 5_000) { uwsgi::sharedarea_write($id, 1024, chr(65 + $i % 26) x 1000) }
    }
    else {
        for (1 .. 5_000) {
            my $s = uwsgi::sharedarea_read($id, 1024, 1000);
            die "torn read\n" if $s ne substr($s, 0, 1) x 1000;
        }
    }
});
is_deeply(\@st, [0, 0], 'a reader never sees half of a write');

# a child's new area is its own; areas created before the fork are shared
@st = in_children(1, sub {
    my $cid = SharedArea::init('1');
    die "id $cid\n" unless $cid == 1;
    uwsgi::sharedarea_write($cid, 0, 'private');
    uwsgi::sharedarea_write($id, 2000, 'shared');
});
is_deeply(\@st, [0], 'a child creates an area of its own');
is(SharedArea::count(), 1, '... which the parent does not have');
is(uwsgi::sharedarea_read($id, 2000, 6), 'shared', '... while area 0 is still shared');

done_testing();
