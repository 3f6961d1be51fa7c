# The single-area names of uWSGI before 1.9.21 work on area 0.
use strict;
use warnings;
use Test::More;

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea '1';

alarm 60;

is(SharedArea::count(), 1, 'use SharedArea "1" created area 0');
my $size = SharedArea::info(0)->{size};

is(uwsgi::sharedarea_writebyte(10, 65), undef, 'writebyte returns undef');
is(uwsgi::sharedarea_readbyte(10), 65, 'readbyte');
is(uwsgi::sharedarea_read(0, 10, 1), 'A', '... the same byte as sharedarea_read sees');
uwsgi::sharedarea_writebyte(11, 200);
is(uwsgi::sharedarea_readbyte(11), -56, 'a byte is signed, as read8');
uwsgi::sharedarea_writebyte(12, -1);
is(uwsgi::sharedarea_read8(0, 12), -1, 'writebyte -1');

is(uwsgi::sharedarea_writelong(16, 1234567890123), undef, 'writelong returns undef');
is(uwsgi::sharedarea_readlong(16), 1234567890123, 'readlong is 64-bit');
is(uwsgi::sharedarea_read64(0, 16), 1234567890123, '... the same as read64');
is(uwsgi::sharedarea_inclong(16), undef, 'inclong returns undef');
is(uwsgi::sharedarea_readlong(16), 1234567890124, 'inclong adds 1');
uwsgi::sharedarea_inclong(16, 10);
is(uwsgi::sharedarea_readlong(16), 1234567890134, 'inclong adds the amount');
uwsgi::sharedarea_inclong(16, -34);
is(uwsgi::sharedarea_readlong(16), 1234567890100, 'a negative amount');
uwsgi::sharedarea_writelong(24, -5);
is(uwsgi::sharedarea_readlong(24), -5, 'a negative long');

is(uwsgi::sharedarea_readlong($size - 8), uwsgi::sharedarea_read64(0, $size - 8), 'readlong at the last 8 bytes');
my $before = uwsgi::sharedarea_read(0, 0);
for my $back (1 .. 7) {
    my $pos = $size - $back;
    ok(!eval { uwsgi::sharedarea_readlong($pos); 1 }, "readlong at size-$back dies");
    like($@, qr/^sharedarea_readlong: area 0: 8 bytes at $pos run past the end/, '... naming readlong and the area');
    ok(!eval { uwsgi::sharedarea_writelong($pos, 1); 1 }, "writelong at size-$back dies");
    like($@, qr/^sharedarea_writelong: area 0: /, '... naming writelong');
    ok(!eval { uwsgi::sharedarea_inclong($pos); 1 }, "inclong at size-$back dies");
    like($@, qr/^sharedarea_inclong: area 0: /, '... naming inclong');
}
ok(!eval { uwsgi::sharedarea_readbyte($size); 1 }, 'readbyte at the end dies');
like($@, qr/^sharedarea_readbyte: area 0: position $size is at or past the end/, '... with the cause');
ok(!eval { uwsgi::sharedarea_writebyte(-1, 1); 1 }, 'writebyte at -1 dies');
like($@, qr/^sharedarea_writebyte: area 0: position -1 is negative/, '... with the cause');
ok(!eval { uwsgi::sharedarea_writebyte(0, 'x'); 1 }, 'writebyte of a non-number dies');
like($@, qr/^sharedarea_writebyte: area 0: value "x" is not a number/, '... with the cause');
is(uwsgi::sharedarea_read(0, 0), $before, 'the failed calls changed nothing');

done_testing();
