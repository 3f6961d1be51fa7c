# The string sharedarea_read returns is the caller's own value: every way
# perl can keep it (assignment, push, lists, map, sort, references, sub
# returns, recursion, aliases in foreach/map/@_) keeps what was read then,
# whatever later calls of the same call site read, and changing a kept value
# never leaks into the next call.  Small and large results alike, on both
# sides of the 4096 bytes a call site keeps in its own target.
use strict;
use warnings;
use Test::More;

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea;
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedAreaTest::Area qw(lettered_area);

alarm 60;

my $id   = SharedArea::init('4');
my $size = SharedArea::info($id)->{size};

sub put  { uwsgi::sharedarea_write($id, 0, $_[0]) }
sub get  { uwsgi::sharedarea_read($id, $_[0], $_[1]) }    # one call site

put('ABCDEFGH');

# --- assignment, push, lists -------------------------------------------------
{
    my @kept;
    for my $i (0 .. 3) {
        put(chr(ord('a') + $i) x 8);
        my $x = uwsgi::sharedarea_read($id, 0, 8);
        push @kept, $x;
    }
    is_deeply(\@kept, [ 'aaaaaaaa', 'bbbbbbbb', 'cccccccc', 'dddddddd' ],
              'my $x = read(...) in a loop keeps each value');

    my @pushed;
    for my $i (0 .. 3) {
        put(chr(ord('k') + $i) x 3);
        push @pushed, uwsgi::sharedarea_read($id, 0, 3);
    }
    is_deeply(\@pushed, [qw(kkk lll mmm nnn)], 'push @a, read(...) keeps each value');
}

put('ABCDEFGH');
is_deeply([ uwsgi::sharedarea_read($id, 0, 2), uwsgi::sharedarea_read($id, 2, 2) ],
          [ 'AB', 'CD' ], 'two calls in one list');
is_deeply([ map { uwsgi::sharedarea_read($id, $_, 1) } 0 .. 4 ], [qw(A B C D E)],
          'one call site many times in map');
is(join(',', map { uwsgi::sharedarea_read($id, $_, 2) } 0, 2, 4, 6), 'AB,CD,EF,GH', '... joined');
is_deeply([ map { get($_, 1) } 0 .. 3 ], [qw(A B C D)], 'returned from a sub, in a list');
is_deeply([ sort { $b cmp $a } map { uwsgi::sharedarea_read($id, $_, 1) } 0 .. 3 ],
          [qw(D C B A)], 'sorted');
is_deeply([ (uwsgi::sharedarea_read($id, 1, 2)) x 3 ], [qw(BC BC BC)], 'repeated with x');
is('<' . uwsgi::sharedarea_read($id, 0, 3) . '|' . uwsgi::sharedarea_read($id, 3, 3) . '>',
   '<ABC|DEF>', 'concatenated');
is_deeply([ map { ${ \ uwsgi::sharedarea_read($id, $_, 1) } } 0 .. 2 ], [qw(A B C)],
          'dereferenced at once');
my @refs = map { \ uwsgi::sharedarea_read($id, $_, 1) } 0 .. 3;
is_deeply([ map { $$_ } @refs ], [qw(A B C D)], 'references taken in map point at distinct values');

sub rec {
    my $d = shift;
    my $v = uwsgi::sharedarea_read($id, $d, 1);
    return $d ? ($v, rec($d - 1)) : ($v);
}
is_deeply([ rec(4) ], [qw(E D C B A)], 'recursion: each depth keeps its value');

{
    my $f = \&uwsgi::sharedarea_read;
    is_deeply([ map { $f->($id, $_, 1) } 0 .. 2 ], [qw(A B C)], 'through a code reference');
    is_deeply([ map { &uwsgi::sharedarea_read($id, $_, 1) } 0 .. 2 ], [qw(A B C)], 'called with &');
}

# --- changing a kept value changes nothing else -------------------------------
for my $v (uwsgi::sharedarea_read($id, 0, 3)) { $v .= 'xyz' }
is(uwsgi::sharedarea_read($id, 0, 3), 'ABC', 'appending to the foreach alias does not leak');
for my $round (1 .. 2) {
    for my $v (uwsgi::sharedarea_read($id, 0, 3)) { $v .= 'xyz'; utf8::upgrade($v); $v .= "\x{263A}" }
}
{
    my $r = uwsgi::sharedarea_read($id, 0, 3);
    is($r, 'ABC', 'a wide character added to an alias does not leak');
    ok(!utf8::is_utf8($r), '... the result is a byte string');
}
sub mangle { $_[0] .= '!'; return $_[0] }
is(mangle(uwsgi::sharedarea_read($id, 0, 2)), 'AB!', 'changed through @_');
is(mangle(uwsgi::sharedarea_read($id, 0, 2)), 'AB!', '... not twice');
for (1 .. 3) {
    my @a = map { $_ .= '?'; $_ } uwsgi::sharedarea_read($id, 4, 2);
    is($a[0], 'EF?', "changed through map's \$_ ($_)");
}
{
    my @a;
    for my $i (0 .. 2) { my $x = uwsgi::sharedarea_read($id, $i, 1); $x = \@a; push @a, $x }
    is(uwsgi::sharedarea_read($id, 0, 1), 'A', 'the kept copy turned into a reference: next read is plain');
}

# --- sizes: empty, small, around perl's copy-on-write threshold, large ----------
my %data;
for my $n (1, 8, 100, 1249, 1250, 1251, 2000, 4095, 4096, 4097, 10_000, 70_000) {
    next if $n > $size;
    $data{$n} = join '', map { chr(($_ * 7 + $n) % 256) } 1 .. $n;
}
my (@kept, @want);
for my $round (1 .. 2) {
    for my $n (sort { $a <=> $b } keys %data) {
        my $want = $data{$n};
        $want = reverse $want if $round == 2;
        put($want);
        my $got = uwsgi::sharedarea_read($id, 0, $n);    # one call site for all sizes
        push @kept, $got;
        push @want, $want;
        ok(defined $got && !utf8::is_utf8($got), "$n bytes (round $round): a defined byte string");
        is(length $got, $n, "... of length $n");
    }
}
is_deeply(\@kept, \@want, 'every kept value of every size is what was read then');
{
    my @names;
    for my $n (10_000, 8, 10_000, 8, 1) {
        put('x' x $n);
        uwsgi::sharedarea_read($id, 0, $n) for 1 .. 2;      # void context
        push @names, length uwsgi::sharedarea_read($id, 0, $n);
    }
    is_deeply(\@names, [ 10_000, 8, 10_000, 8, 1 ], 'large and small reads alternate at one call site');
}
{
    # an empty result: past `used` when it is honoured
    put('ABCDEFGH');
    SharedArea::set_used($id, 4);
    my @got = map { uwsgi::sharedarea_read($id, $_) } 2, 6, 0;
    SharedArea::honour_used($id, 0);
    is_deeply(\@got, [ 'CD', '', 'ABCD' ], 'an empty result between others at one call site');
    ok(defined $got[1] && !utf8::is_utf8($got[1]), '... is a defined empty byte string');
}

# --- a failed read leaves the last result alone ----------------------------------
put('ABCDEFGH');
{
    my @got;
    for my $pos (0, $size, 2) {
        my $v = eval { uwsgi::sharedarea_read($id, $pos, 2) };
        push @got, $v;
    }
    is_deeply(\@got, [ 'AB', undef, 'CD' ], 'a croak in between changes no result');
}


# --- results of 4095, 4096 and 4097 bytes (the size kept in the call's own target) ---

my ($rid, $RDATA) = lettered_area(16384);
sub want { my ($pos, $len) = @_; substr($RDATA, $pos, $len) }

for my $len (4095, 4096, 4097) {
    my $r;
    $r = sub { my $d = shift; $d ? (uwsgi::sharedarea_read($rid, $d, $len), $r->($d - 1)) : () };
    my @got = $r->(3);
    is_deeply([ map { length } @got ], [ ($len) x 3 ], "recursion, len $len: lengths");
    is_deeply(\@got, [ map { want($_, $len) } 3, 2, 1 ], "recursion, len $len: each its own bytes");

    my @s = sort { uwsgi::sharedarea_read($rid, $b, $len) cmp uwsgi::sharedarea_read($rid, $a, $len) } 0 .. 4;
    is_deeply(\@s, [ 4, 3, 2, 1, 0 ], "sort block, len $len");

    my @refs;
    push @refs, \uwsgi::sharedarea_read($rid, $_, $len) for 0 .. 2;
    is_deeply([ map { $$_ } @refs ], [ map { want($_, $len) } 0 .. 2 ], "references to results, len $len");

    my @closures = map { my $i = $_; sub { uwsgi::sharedarea_read($rid, $i, $len) } } 0 .. 2;
    is_deeply([ map { $_->() } @closures ], [ map { want($_, $len) } 0 .. 2 ], "closures, len $len");

    my $goto = sub { goto &uwsgi::sharedarea_read };
    is_deeply([ $goto->($rid, 0, $len), $goto->($rid, 1, $len) ], [ want(0, $len), want(1, $len) ],
        "goto &uwsgi::sharedarea_read, len $len");

    # A result aliased by foreach and changed every way perl allows: the next
    # call of the same call site still returns a clean byte string.
    my @seen;
    for my $i (0 .. 5) {
        for (uwsgi::sharedarea_read($rid, $i, $len)) {
            push @seen, $_;
            no warnings;
            if    ($i == 0) { s/^.{50}//s }
            elsif ($i == 1) { utf8::upgrade($_); $_ .= "\x{263a}" }
            elsif ($i == 2) { $_ = \@seen }
            elsif ($i == 3) { $_ = *STDOUT }
            elsif ($i == 4) { pos($_) = 3; $_ = 1.5 }
        }
    }
    is_deeply(\@seen, [ map { want($_, $len) } 0 .. 5 ], "foreach alias mutated (chop, utf8, ref, glob, pos), len $len");
    ok(!grep({ utf8::is_utf8($_) } @seen), "... every result a byte string");
}

done_testing();
