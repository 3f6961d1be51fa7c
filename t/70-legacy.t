# The older names, as in uWSGI 2.0: sharedarea_readbyte, writebyte, readlong,
# writelong and inclong are aliases of read8, write8, read64, write64 and
# inc64, with the area id first - on any area, answering exactly as the
# functions they alias.
use strict;
use warnings;
use Test::More;

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea '1', '1';

alarm 60;

is(SharedArea::count(), 2, 'use SharedArea created areas 0 and 1');
my $size = SharedArea::info(1)->{size};

my %alias_of = (
    readbyte => 'read8', writebyte => 'write8',
    readlong => 'read64', writelong => 'write64', inclong => 'inc64',
);
for my $old (sort keys %alias_of) {
    ok(defined &{"uwsgi::sharedarea_$old"}, "uwsgi::sharedarea_$old exists");
}

# Each alias on area 1, then the function it aliases on the same bytes of area 0:
# the same return values and the same bytes.
sub both {
    my ($old, @args) = @_;
    no strict 'refs';
    my $new = $alias_of{$old};
    my $r_old = &{"uwsgi::sharedarea_$old"}(1, @args);
    my $r_new = &{"uwsgi::sharedarea_$new"}(0, @args);
    return ($r_old, $r_new);
}

my ($o, $n) = both(writebyte => 10, 65);
is($o, $n, 'writebyte returns what write8 returns');
is($o, 1, '... 1');
is(uwsgi::sharedarea_readbyte(1, 10), 65, 'readbyte(id, pos)');
is(uwsgi::sharedarea_read(1, 10, 1), 'A', '... the byte sharedarea_read sees in that area');
is(uwsgi::sharedarea_read(0, 10, 1), 'A', 'write8 wrote the same byte in area 0');
both(writebyte => 11, 200);
is(uwsgi::sharedarea_readbyte(1, 11), -56, 'a byte is signed, as read8');
is(uwsgi::sharedarea_readbyte(1, 11), uwsgi::sharedarea_read8(0, 11), '... the same as read8');

($o, $n) = both(writelong => 16, 1234567890123);
is($o, $n, 'writelong returns what write64 returns');
is(uwsgi::sharedarea_readlong(1, 16), 1234567890123, 'readlong(id, pos) is 64-bit');
is(uwsgi::sharedarea_read64(1, 16), 1234567890123, '... the same bytes read64 sees');
($o, $n) = both(inclong => 16);
is($o, 1234567890124, 'inclong(id, pos) adds 1 and returns the new value, as inc64');
is($n, $o, '... the same as inc64');
($o, $n) = both(inclong => 16, -24);
is($o, 1234567890100, 'inclong with a (negative) amount');
is($n, $o, '... the same as inc64');
both(writelong => 24, -5);
is(uwsgi::sharedarea_readlong(1, 24), -5, 'a negative long');

is(uwsgi::sharedarea_read(1, 0), uwsgi::sharedarea_read(0, 0), 'the aliases left area 1 as the originals left area 0');
is(uwsgi::sharedarea_read64(0, 16), uwsgi::sharedarea_read64(1, 16), '... byte for byte');

# Errors: as the aliased function's, naming the name that was called.
my $before = uwsgi::sharedarea_read(1, 0);
for my $back (1 .. 7) {
    my $pos = $size - $back;
    ok(!eval { uwsgi::sharedarea_readlong(1, $pos); 1 }, "readlong at size-$back dies");
    like($@, qr/^sharedarea_readlong: area 1: 8 bytes at $pos run past the end/, '... naming readlong and the area');
    ok(!eval { uwsgi::sharedarea_writelong(1, $pos, 1); 1 }, "writelong at size-$back dies");
    like($@, qr/^sharedarea_writelong: area 1: /, '... naming writelong');
    ok(!eval { uwsgi::sharedarea_inclong(1, $pos); 1 }, "inclong at size-$back dies");
    like($@, qr/^sharedarea_inclong: area 1: /, '... naming inclong');
}
ok(!eval { uwsgi::sharedarea_readbyte(1, $size); 1 }, 'readbyte at the end dies');
like($@, qr/^sharedarea_readbyte: area 1: position $size is at or past the end/, '... with the cause');
ok(!eval { uwsgi::sharedarea_writebyte(1, -1, 1); 1 }, 'writebyte at -1 dies');
like($@, qr/^sharedarea_writebyte: area 1: position -1 is negative/, '... with the cause');
ok(!eval { uwsgi::sharedarea_writebyte(1, 0, 'x'); 1 }, 'writebyte of a non-number dies');
like($@, qr/^sharedarea_writebyte: area 1: value "x" is not a number/, '... with the cause');
ok(!eval { uwsgi::sharedarea_readlong(7, 0); 1 }, 'readlong of an area that does not exist dies');
like($@, qr/^sharedarea_readlong: area 7: no such area/, '... with the cause');
is(uwsgi::sharedarea_read(1, 0), $before, 'the failed calls changed nothing');

# The single-area form of uWSGI < 1.9.21 (no id) is not what uWSGI 2.0 does:
# it dies with the usage instead of reading area 0 at the wrong place.
ok(!eval { uwsgi::sharedarea_readlong(16); 1 }, 'readlong($pos) without an id dies');
like($@, qr/^Usage: uwsgi::sharedarea_readlong\(id, pos\)/, '... with the id-first usage');
ok(!eval { uwsgi::sharedarea_writebyte(10, 65); 1 }, 'writebyte($pos, $value) without an id dies');
like($@, qr/^Usage: uwsgi::sharedarea_writebyte\(id, pos, value\)/, '... with the id-first usage');

done_testing();
