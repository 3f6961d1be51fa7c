# sharedarea_readfast: reads into the caller's own buffer, grows it only when
# too small, never reallocates a buffer that is large enough, leaves exactly
# the bytes read as a byte string, and never writes into read-only or shared
# (copy-on-write) strings; odd buffers (captures, substr, missing elements,
# numbers, ties, globs) get the bytes or a clear error.
use strict;
use warnings;
use Test::More;
use B ();

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea;
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedAreaTest::Area qw(err_of lettered_area);

alarm 60;

my $id   = SharedArea::init('1');
my $size = SharedArea::info($id)->{size};
my $data = join '', map { chr(($_ * 13 + 5) % 256) } 0 .. $size - 1;
uwsgi::sharedarea_write($id, 0, $data);
uwsgi::sharedarea_write($id, 0, 'ABCDEFGH');
substr($data, 0, 8) = 'ABCDEFGH';

sub addr { unpack 'J', pack 'p', $_[0] }    # where the string's buffer is
sub len  { B::svref_2object(\$_[0])->LEN }  # its allocated size
sub flag { my ($sv, $f) = @_; B::svref_2object(\$_[0])->FLAGS & $f }

# --- the basics
my $buf = '';
is(uwsgi::sharedarea_readfast($id, 0, $buf, 8), 8, 'returns the count');
is($buf, 'ABCDEFGH', 'the bytes');
is(length $buf, 8, 'exactly the bytes read');
ok(!utf8::is_utf8($buf), 'a byte string');

$buf = 'ab';
is(uwsgi::sharedarea_readfast($id, 0, $buf, 4096), 4096, 'a short buffer grows');
is($buf, substr($data, 0, 4096), '... and holds the bytes');

$buf = 'x' x 100;
is(uwsgi::sharedarea_readfast($id, 10, $buf), $size - 10, 'len omitted: to the end');
is($buf, substr($data, 10), '... the right bytes');
$buf = 'x' x 100;
is(uwsgi::sharedarea_readfast($id, 10, $buf, 0), $size - 10, 'len 0: to the end');
is(uwsgi::sharedarea_readfast($id, $size - 1, $buf, 1), 1, 'the last byte');
is($buf, substr($data, -1), '... is the last byte');

# --- a large buffer is reused, not reallocated
my $big = "\0" x 100_000;
uwsgi::sharedarea_readfast($id, 0, $big, 10);    # the first call may un-share it
my ($a0, $l0) = (addr($big), len($big));
cmp_ok($l0, '>=', 100_000, 'the buffer keeps its allocation after a short read');
is(length $big, 10, '... but holds only the 10 bytes read');
my $moved = 0;
for my $i (1 .. 200) {
    my $n = 1 + ($i * 37) % $size;
    my $pos = ($i * 101) % ($size - $n + 1);
    uwsgi::sharedarea_readfast($id, $pos, $big, $n) == $n or $moved += 1000;
    $moved++ if addr($big) != $a0 || len($big) != $l0;
    $moved += 1000 if $big ne substr($data, $pos, $n);
}
is($moved, 0, '200 reads of varied lengths: same buffer, same size, right bytes');

my $exact = 'y' x 64;       # room for exactly 64 + NUL, or a little more
uwsgi::sharedarea_readfast($id, 0, $exact, 64);
my $a1 = addr($exact);
uwsgi::sharedarea_readfast($id, 100, $exact, 64) for 1 .. 10;
is(addr($exact), $a1, 'a buffer read into with the same length again is not moved');
is($exact, substr($data, 100, 64), '... and has the bytes');

# --- what $buf was before does not matter, and nothing else changes
my $undef;
is(uwsgi::sharedarea_readfast($id, 0, $undef, 5), 5, 'an undef buffer works');
is($undef, 'ABCDE', '... and gets the bytes');

my $num = 42;
uwsgi::sharedarea_readfast($id, 0, $num, 2);
is("$num", 'AB', 'a number becomes the bytes');
ok(!flag($num, B::SVf_IOK()), '... and loses its stale integer value');

my $wide = "\x{263A}" x 20;
uwsgi::sharedarea_readfast($id, 0, $wide, 8);
ok(!utf8::is_utf8($wide), 'a UTF-8 buffer ends up a byte string');
is($wide, 'ABCDEFGH', '... of the right bytes');

my $orig = "\0" x 8;
my $sibling = $orig;    # copy-on-write: both share one buffer
uwsgi::sharedarea_readfast($id, 0, $orig, 8);
is($orig, 'ABCDEFGH', 'the buffer gets the bytes');
is($sibling, "\0" x 8, 'its copy-on-write sibling does not');

my @seen;
for (1 .. 2) {
    my $l = 'llllllll';    # a copy of a literal in the op tree
    push @seen, $l;
    uwsgi::sharedarea_readfast($id, 0, $l, 4);
    push @seen, $l;
}
is_deeply(\@seen, ['llllllll', 'ABCD', 'llllllll', 'ABCD'], 'a string literal is not modified');

my %h = (k => 'old');
uwsgi::sharedarea_readfast($id, 0, $h{k}, 3);
is($h{k}, 'ABC', 'a hash element');
my @a = ('old');
uwsgi::sharedarea_readfast($id, 0, $a[0], 3);
is($a[0], 'ABC', 'an array element');

{
    package Tied;
    sub TIESCALAR { my $v = $_[1]; bless \$v }
    sub FETCH { ${ $_[0] } }
    sub STORE { ${ $_[0] } = $_[1]; $main::stored++ }
}
our $stored = 0;
tie my $tied, 'Tied', 'old';
uwsgi::sharedarea_readfast($id, 0, $tied, 4);
is($stored, 1, 'a tied buffer is STOREd once');
is($tied, 'ABCD', '... with the bytes');
untie $tied;

# --- errors: read-only buffers, and bad ranges leave the buffer alone
use constant K => 'kkkkkkkk';
ok(!eval { uwsgi::sharedarea_readfast($id, 0, K, 8); 1 }, 'a constant dies');
like($@, qr/^sharedarea_readfast: area 0: Modification of a read-only value attempted/, '... saying it is read-only');
is(K, 'kkkkkkkk', '... and the constant is unchanged');

ok(!eval { uwsgi::sharedarea_readfast($id, 0, 'literal', 4); 1 }, 'a literal dies');
like($@, qr/^sharedarea_readfast: area 0: Modification of a read-only value/, '... read-only');

my $ro = 'readonly';
Internals::SvREADONLY($ro, 1);
ok(!eval { uwsgi::sharedarea_readfast($id, 0, $ro, 4); 1 }, 'a read-only variable dies');
is($ro, 'readonly', '... unchanged');

my $keep = 'keep';
ok(!eval { uwsgi::sharedarea_readfast($id, $size, $keep, 1); 1 }, 'pos = size dies');
like($@, qr/^sharedarea_readfast: area 0: position $size is at or past the end/, '... with the cause');
ok(!eval { uwsgi::sharedarea_readfast($id, 1, $keep, $size); 1 }, 'a range past the end dies');
like($@, qr/^sharedarea_readfast: area 0: $size bytes at 1 run past the end/, '... with the cause');
ok(!eval { uwsgi::sharedarea_readfast($id, 0, $keep, 2**64); 1 }, 'len 2**64 dies');
is($keep, 'keep', 'the buffer is untouched by failed calls');
my $k = 5;
ok(!eval { uwsgi::sharedarea_readfast($id, 0, $k, 'x'); 1 }, 'a bad len dies');
is($k, 5, '... before the buffer is converted');
my $ref = [];
ok(!eval { uwsgi::sharedarea_readfast($id, 0, $ref, 1); 1 }, 'a reference as buffer dies');
like($@, qr/^sharedarea_readfast: area 0: the buffer is a reference/, '... saying so');
ok(ref $ref, '... and stays a reference');

# --- used
SharedArea::set_used($id, 20);
$buf = '';
is(uwsgi::sharedarea_readfast($id, 5, $buf), 15, 'len omitted stops at used');
is(uwsgi::sharedarea_readfast($id, 30, $buf), 0, 'nothing past used');
is($buf, '', '... an empty string');
SharedArea::honour_used($id, 0);


# --- odd buffers: captures, substr, missing elements, numbers, ties, globs ---------

my ($rid, $RDATA) = lettered_area(16384);
sub want { my ($pos, $len) = @_; substr($RDATA, $pos, $len) }

{
    # A capture variable is no buffer: the error names readfast, not perl's
    # "Modification of a read-only value attempted".
    my $e = err_of(sub { "xyz" =~ /(y)/; uwsgi::sharedarea_readfast($rid, 0, $1, 4) });
    like($e, qr/^sharedarea_readfast: area $rid: the buffer is a special variable/, 'readfast into $1 dies naming sharedarea_readfast');
}
{
    # substr() past the end of its string as the buffer: perl's own set-magic
    # refuses it ("substr outside of string") after the bytes were copied into a
    # private buffer, so the string and the area are left as they were.
    my $s = 'ab';
    my $e = err_of(sub { no warnings; uwsgi::sharedarea_readfast($rid, 0, substr($s, 5, 1), 3) });
    like($e, qr/substr outside of string/, 'readfast into substr() past the end of its string dies (perl\'s own error)');
    is($s, 'ab', '... the string is unchanged');
    is(uwsgi::sharedarea_read($rid, 0, 16384), $RDATA, '... and so is the area');
}
{
    my $s = '0123456789';
    is(uwsgi::sharedarea_readfast($rid, 0, substr($s, 2, 3), 4), 4, 'readfast into substr lvalue: count');
    is($s, '01ABCD56789', '... the substring is replaced by the bytes read');

    my @a;
    uwsgi::sharedarea_readfast($rid, 1, $a[3], 5000);
    is(scalar(@a), 4, 'readfast into a missing array element vivifies it');
    is($a[3], want(1, 5000), '... with the bytes read (5000)');

    my %h;
    uwsgi::sharedarea_readfast($rid, 2, $h{k}, 4);
    is_deeply(\%h, { k => want(2, 4) }, 'readfast into a missing hash element vivifies it');

    my $n = 12345.5;
    uwsgi::sharedarea_readfast($rid, 0, $n, 3);
    ok(!utf8::is_utf8($n) && $n eq 'ABC', 'readfast into a number leaves the bytes');
    { no warnings; is($n + 0, 0, '... and no stale number'); }

    my $u = "\x{263a}" x 100;
    uwsgi::sharedarea_readfast($rid, 3, $u, 8);
    ok(!utf8::is_utf8($u), 'readfast into a UTF-8 string leaves a byte string');
    is($u, want(3, 8), '... of the bytes read');

    my $p = 5;
    is(uwsgi::sharedarea_readfast($rid, $p, $p, 3), 3, 'readfast with the buffer aliased to the position');
    is($p, want(5, 3), '... reads from the position given, then overwrites it');

    my $f = sub { uwsgi::sharedarea_readfast($rid, 0, $_[0], 4097) };
    my $x = 0;
    $f->($x);
    is($x, want(0, 4097), 'readfast into $_[0] writes the caller\'s variable');

    {
        package SharedAreaTest::TiedScalar;
        sub TIESCALAR { my ($c, $v) = @_; bless { v => $v, fetch => 0, store => 0 }, $c }
        sub FETCH     { $_[0]{fetch}++; $_[0]{v} }
        sub STORE     { $_[0]{store}++; $_[0]{v} = $_[1] }
    }
    my $t = tie my $tb, 'SharedAreaTest::TiedScalar', 42;
    is(uwsgi::sharedarea_readfast($rid, 7, $tb, 5000), 5000, 'readfast into a tied scalar');
    is($t->{v}, want(7, 5000), '... STOREs the bytes read');
    is($t->{store}, 1, '... once');
    my $tp = tie my $tpos, 'SharedAreaTest::TiedScalar', 9;
    is(uwsgi::sharedarea_read($rid, $tpos, 2), want(9, 2), 'a tied position is FETCHed');
    is($tp->{fetch}, 1, '... once');

    my $g = *STDOUT;
    like(err_of(sub { uwsgi::sharedarea_readfast($rid, 0, $g, 3) }), qr/^sharedarea_readfast: area $rid: /,
        'readfast into a glob dies naming the function');
    like(err_of(sub { uwsgi::sharedarea_readfast($rid, 0, "lit", 3) }), qr/^sharedarea_readfast: area $rid: .*read-only/,
        'readfast into a literal dies: read-only');
}

done_testing();
