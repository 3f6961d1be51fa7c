# Round trips, ranges at the end of the area, every integer width with sign
# and wrap-around, update counting, used/honour_used, info and backings, and
# what counts as a number (Math::BigInt, dualvars, captures; not references).
use strict;
use warnings;
use Test::More;
use File::Temp ();

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea;
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedAreaTest::Area qw(err_of lettered_area);

alarm 60;    # nothing here may hang

my $id   = SharedArea::init('2');
my $info = SharedArea::info($id);
my $page = $info->{page_size};
my $size = $info->{size};
is($id, 0, 'area 0');
is($size, 2 * $page, '2 pages');
is_deeply($info, {
    size => $size, pages => 2, page_size => $page, updates => 0, used => 0,
    recoveries => 0, backing => 'anonymous', honour_used => 0,
}, 'info of a fresh anonymous area');

sub updates { SharedArea::updates($id) }
sub dies_like (&$$) {
    my ($code, $re, $name) = @_;
    my $ok = eval { $code->(); 1 };
    ok(!$ok, "$name dies") and like($@, $re, "$name: message");
}

# --- bytes -----------------------------------------------------------------
is(uwsgi::sharedarea_write($id, 0, 'hello world'), 1, 'write returns 1');
is(uwsgi::sharedarea_read($id, 0, 11), 'hello world', 'round trip');
is(uwsgi::sharedarea_read($id, 6, 5), 'world', 'read in the middle');
my $all = uwsgi::sharedarea_read($id, 0);
is(length $all, $size, 'read without len: to the end');
ok(!utf8::is_utf8($all), 'read returns a byte string');
is(substr($all, 0, 11), 'hello world', '... starting at pos');
is(length uwsgi::sharedarea_read($id, 100, 0), $size - 100, 'len 0: to the end');
is(length uwsgi::sharedarea_read($id, $size - 4), 4, 'no len near the end');

uwsgi::sharedarea_write($id, $size - 1, 'Z');
is(uwsgi::sharedarea_read($id, $size - 1, 1), 'Z', 'last byte, len 1');
is(uwsgi::sharedarea_read($id, $size - 1), 'Z', 'last byte, no len');
is(uwsgi::sharedarea_write($id, $size - 5, '12345'), 1, 'write exactly to the end');
is(uwsgi::sharedarea_read($id, $size - 5, 5), '12345', 'read exactly to the end');

my $before = uwsgi::sharedarea_read($id, 0);
dies_like { uwsgi::sharedarea_read($id, $size - 1, 2) }
    qr/^sharedarea_read: area 0: 2 bytes at \d+ run past the end \(\d+ bytes\) at /, 'read one past the end';
dies_like { uwsgi::sharedarea_read($id, $size) } qr/^sharedarea_read: area 0: position \d+ is at or past the end/,
    'read at pos = size';
dies_like { uwsgi::sharedarea_write($id, $size - 4, '12345') }
    qr/^sharedarea_write: area 0: 5 bytes at \d+ run past the end/, 'write one past the end';
dies_like { uwsgi::sharedarea_write($id, $size, 'x') } qr/^sharedarea_write: area 0: /, 'write at pos = size';
is(uwsgi::sharedarea_read($id, 0), $before, 'failed writes changed nothing');

# --- update counting ------------------------------------------------------
my $u = updates();
uwsgi::sharedarea_write($id, 0, 'abc');
is(updates(), $u + 1, 'a write counts one update');
uwsgi::sharedarea_write($id, 0, '');
is(updates(), $u + 2, 'an empty write counts one update');
uwsgi::sharedarea_read($id, 0, 3);
uwsgi::sharedarea_read64($id, 0);
is(updates(), $u + 2, 'reads do not count');
is(uwsgi::sharedarea_update($id), 1, 'update returns 1');
is(updates(), $u + 3, 'update counts one');
uwsgi::sharedarea_write32($id, 0, 1);
uwsgi::sharedarea_inc16($id, 0);
uwsgi::sharedarea_dec8($id, 0);
is(updates(), $u + 6, 'writeN, incN, decN count one each');
eval { uwsgi::sharedarea_write($id, $size, 'x') };
is(updates(), $u + 6, 'a failed write does not count');
is(SharedArea::info($id)->{updates}, updates(), 'info reports the same counter');

# --- strings of characters: their internal bytes, as uWSGI writes them ------
my $latin = "\xE9t\xE9";
utf8::upgrade($latin);
is(uwsgi::sharedarea_write($id, 0, $latin), 1, 'an upgraded latin-1 string is written');
is(uwsgi::sharedarea_read($id, 0, 5), "\xC3\xA9t\xC3\xA9", '... as its UTF-8 encoding (5 bytes), as uWSGI does');
ok(utf8::is_utf8($latin), "... and the caller's string is not changed");
is(uwsgi::sharedarea_write($id, 0, "\xE9t\xE9"), 1, 'the same characters as a byte string');
is(uwsgi::sharedarea_read($id, 0, 3), "\xE9t\xE9", '... are its 3 bytes');
uwsgi::sharedarea_write($id, 0, 12345);
is(uwsgi::sharedarea_read($id, 0, 5), '12345', 'a number is written as its string');
is(uwsgi::sharedarea_write($id, 0, "smile \x{263A}"), 1, 'wide characters are written');
is(uwsgi::sharedarea_read($id, 0, 9), "smile \xE2\x98\xBA", '... as UTF-8, no die (as uWSGI)');
my $bytes = "\x{263A}";
utf8::encode($bytes);
uwsgi::sharedarea_write($id, 0, $bytes);
is(uwsgi::sharedarea_read($id, 0, 3), "\xE2\x98\xBA", 'encoded UTF-8 goes in as bytes');

# --- integers --------------------------------------------------------------
my %pack = (8 => 'c', 16 => 's', 32 => 'l', 64 => 'q');
for my $w (8, 16, 32, 64) {
    my ($read, $write, $inc, $dec) = map { \&{"uwsgi::sharedarea_$_$w"} } qw(read write inc dec);
    my $n   = $w / 8;
    my $max = $w == 64 ? 9223372036854775807 : 2**($w - 1) - 1;
    my $min = $w == 64 ? -9223372036854775807 - 1 : -2**($w - 1);
    for my $pos (0, 1, 3, 17) {    # aligned and not
        for my $v (0, 1, -1, 42, -42, $max, $min) {
            is($write->($id, $pos, $v), 1, "write$w returns 1");
            is($read->($id, $pos), $v, "write$w/read$w $v at $pos");
            is(uwsgi::sharedarea_read($id, $pos, $n), pack($pack{$w}, $v), "... native byte order, as pack '$pack{$w}'");
        }
    }
    # values wider than the width keep their low bits, two's complement
    my @wide = $w == 64
        ? ([18446744073709551615, -1], [9223372036854775808, $min], [2**63, $min], ['18446744073709551614', -2])
        : ([2**$w - 1, -1], [2**($w - 1), $min], [2**$w + 5, 5], [-2**($w - 1) - 1, $max], [2**40 + 7, 7]);
    for my $case (@wide) {
        my ($v, $want) = @$case;
        $write->($id, 8, $v);
        is($read->($id, 8), $want, "write$w $v keeps the low bits: $want");
        is(uwsgi::sharedarea_read($id, 8, $n), substr(pack('q', $want), 0, $n), '... as pack does');
    }
    # inc/dec: the new value, default 1, wrapping
    $write->($id, 8, 10);
    is($inc->($id, 8), 11, "inc$w returns the new value");
    is($inc->($id, 8, 10), 21, "inc$w by 10");
    is($inc->($id, 8, -30), -9, "inc$w by -30");
    is($dec->($id, 8), -10, "dec$w returns the new value");
    is($dec->($id, 8, 5), -15, "dec$w by 5");
    is($read->($id, 8), -15, "read$w sees it");
    $write->($id, 8, $max);
    is($inc->($id, 8), $min, "inc$w wraps from max to min");
    is($dec->($id, 8), $max, "dec$w wraps from min to max");
    $write->($id, 3, 0);
    is($dec->($id, 3), -1, "dec$w at an unaligned position");

    # the last positions: pos + width exactly at the end works, one more dies
    is($write->($id, $size - $n, 77), 1, "write$w at the last slot");
    is($read->($id, $size - $n), 77, "read$w at the last slot");
    is($inc->($id, $size - $n), 78, "inc$w at the last slot");
    is($dec->($id, $size - $n), 77, "dec$w at the last slot");
    $before = uwsgi::sharedarea_read($id, 0);
    my $upd = updates();
    for my $back (1 .. $n - 1, 0) {
        my $pos = $size - $back;
        for my $op ([read => $read], [write => $write], [inc => $inc], [dec => $dec]) {
            my ($name, $f) = @$op;
            dies_like { $f->($id, $pos, $name eq 'write' ? 1 : ()) }
                qr/^sharedarea_$name$w: area 0: (\d+ bytes at $pos run past the end|position $pos is at or past the end)/,
                "$name$w at $pos";
        }
    }
    is(uwsgi::sharedarea_read($id, 0), $before, "no byte changed by the failed $w-bit calls");
    is(updates(), $upd, '... and no update counted');
}

# --- used / honour_used ---------------------------------------------------
is(SharedArea::set_used($id, 100), 1, 'set_used');
$info = SharedArea::info($id);
is($info->{used}, 100, 'info: used');
is($info->{honour_used}, 1, 'set_used turns honour_used on');
is(length uwsgi::sharedarea_read($id, 0), 100, 'read without len stops at used');
is(length uwsgi::sharedarea_read($id, 40), 60, '... from pos');
is(uwsgi::sharedarea_read($id, 150), '', '... nothing when pos is past used');
is(length uwsgi::sharedarea_read($id, 0, 200), 200, 'an explicit len reads past used');
is(SharedArea::honour_used($id, 0), 1, 'honour_used off');
is(length uwsgi::sharedarea_read($id, 0), $size, 'read without len: to the end again');
SharedArea::honour_used($id, 1);
is(length uwsgi::sharedarea_read($id, 0), 100, 'honour_used on again');
dies_like { SharedArea::set_used($id, $size + 1) } qr/^SharedArea::set_used: area 0: used \d+ is past the end/,
    'used past the end';
SharedArea::set_used($id, $size);
SharedArea::honour_used($id, 0);

# --- more areas ---------------------------------------------------------------
my $id1 = SharedArea::init('size=100');
is($id1, 1, 'a second area is 1');
is(SharedArea::info($id1)->{size}, $page, 'anonymous areas round size up to a page');
uwsgi::sharedarea_write($id1, 0, 'other');
is(uwsgi::sharedarea_read($id1, 0, 5), 'other', 'the second area has its own bytes');
isnt(uwsgi::sharedarea_read($id, 0, 5), 'other', '... distinct from area 0');

my $dir  = File::Temp->newdir;
my $path = "$dir/area.bin";
{ open my $fh, '>', $path or die $!; print {$fh} "\0" x 10000; close $fh }
my $fid = SharedArea::init("file=$path");
$info = SharedArea::info($fid);
is($info->{backing}, 'file', 'file= area');
is($info->{size}, 10000, 'file= area without size: the whole file');
uwsgi::sharedarea_write($fid, 9990, 'file bytes');
{
    open my $fh, '<', $path or die $!;
    local $/;
    my $data = <$fh>;
    is(substr($data, 9990), 'file bytes', 'writes reach the file');
    is(length $data, 10000, '... which keeps its length');
}

my $name = "sharedarea-t10-$$";
my $nid = SharedArea::init("name=$name,size=8192");
is(SharedArea::info($nid)->{backing}, 'named', 'name= area');
uwsgi::sharedarea_write($nid, 0, 'named');
is(uwsgi::sharedarea_read($nid, 0, 5), 'named', 'named area round trip');
unlink "/dev/shm/$name";

# --- numeric arguments: what uWSGI takes as a number, and what it refuses -------

my ($rid, $RDATA) = lettered_area(16384);
sub want { my ($pos, $len) = @_; substr($RDATA, $pos, $len) }

{
    # Objects that are numbers (Math::BigInt, "use bigint" literals) are taken
    # through their numeric value, as uWSGI's SvIV does.
    require Math::BigInt;
    my ($r, $e) = (undef, '');
    $e = err_of(sub { $r = uwsgi::sharedarea_read(Math::BigInt->new($rid), Math::BigInt->new(2), Math::BigInt->new(3)) });
    is($e, '', 'Math::BigInt id/pos/len are numbers (uWSGI takes them through SvIV)');
    is($r, want(2, 3), '... and read the right bytes');
    $e = err_of(sub { uwsgi::sharedarea_write64($rid, 16000, Math::BigInt->new('9000000000000000000')) });
    is($e, '', 'a Math::BigInt value for write64 is a number');
    is(eval { uwsgi::sharedarea_read64($rid, 16000) }, '9000000000000000000', '... written exactly (no float rounding)');
    my $e2 = err_of(sub { eval q{ use bigint; uwsgi::sharedarea_inc64(0 + $rid, 16008, 1); 1 } or die $@ });
    is($e2, '', 'under "use bigint" literal arguments work (an app written for uWSGI runs unchanged)');
    uwsgi::sharedarea_write($rid, 16000, substr($RDATA, 16000, 16));
}
{
    # A plain reference is not a number.
    like(err_of(sub { uwsgi::sharedarea_read($rid, [1], 1) }),
        qr/^sharedarea_read: area $rid: position is a reference, not a number/, 'a plain array ref as position dies');
}
{
    require Scalar::Util;
    is(uwsgi::sharedarea_read($rid, Scalar::Util::dualvar(1, 'x'), 2), want(1, 2), 'a dualvar position is its number');
    is(uwsgi::sharedarea_read($rid, ' 1 ', 2), want(1, 2), 'a position with spaces around the digits');
    like(err_of(sub { uwsgi::sharedarea_read($rid, "1\0", 2) }), qr/^sharedarea_read: area $rid: position "1\\0" is not a number/,
        'a position with a NUL is not a number');
    like(err_of(sub { uwsgi::sharedarea_read($rid, v1, 2) }), qr/^sharedarea_read: area $rid: position .* is not a number/,
        'a vstring position is not a number');
    uwsgi::sharedarea_write($rid, 100, v65.66);
    is(uwsgi::sharedarea_read($rid, 100, 2), 'AB', 'a vstring as data is its bytes');
    my $e9 = "\xe9";
    utf8::upgrade($e9);
    uwsgi::sharedarea_write($rid, 100, $e9);
    is(uwsgi::sharedarea_read($rid, 100, 2), "\xc3\xa9", 'an upgraded latin-1 string is written as its internal (UTF-8) bytes, as uWSGI');
    uwsgi::sharedarea_write($rid, 100, substr($RDATA, 100, 2));
    "x1y" =~ /(\d)/;
    is(uwsgi::sharedarea_read($rid, $1, 2), want(1, 2), 'a $1 capture as position');
}

is(SharedArea::count(), 5, 'count() sees every area');

done_testing();
