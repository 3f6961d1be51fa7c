# The small functions (readN/writeN/incN/decN, read, write) are called
# without perl's generic entersub work when nothing unusual is going on (see
# "Direct calls" in perl/SharedArea.xs).  Every way of calling must behave as
# a plain sub call: results in every context, argument lists, croaks naming
# the caller's line, nested calls, and a redefined, localised or undefined
# name, &-calls, code references and the debugger reach what perl would call.
use strict;
use warnings;
use Config;
use Test::More;
use B::Deparse;

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea;
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedAreaTest::Area qw(err_of lettered_area);
use SharedAreaTest::Functions qw(uwsgi_functions shape_args);

alarm 60;

my $id = SharedArea::init('1');
uwsgi::sharedarea_write64($id, 8, 0x1234);

# call sites compiled before any redefinition below
sub r64      { uwsgi::sharedarea_read64($_[0], $_[1]) }
sub r64_args { uwsgi::sharedarea_read64(@_) }
sub r_bytes  { uwsgi::sharedarea_read($_[0], $_[1], $_[2]) }
sub d8       { uwsgi::sharedarea_dec8($_[0], $_[1]) }

# --- results and contexts ------------------------------------------------------
is(r64($id, 8), 0x1234, 'scalar result');
is_deeply([ uwsgi::sharedarea_read64($id, 8) ], [0x1234], 'list context: one value');
is(scalar(my @l = uwsgi::sharedarea_inc64($id, 8)), 1, '... from incN too');
uwsgi::sharedarea_dec64($id, 8);
is(r64($id, 8), 0x1234, 'void context call did its work');
is(uwsgi::sharedarea_write64($id, 16, 7), 1, 'writeN returns 1');
is(uwsgi::sharedarea_write($id, 24, 'ab'), 1, 'write returns 1');
is(r_bytes($id, 24, 2), 'ab', 'read returns the bytes');
uwsgi::sharedarea_write64($id, 16, uwsgi::sharedarea_read64($id, 8) + 1);
is(uwsgi::sharedarea_read64($id, 16), 0x1235, 'a call in the arguments of another');
is(join(',', map { uwsgi::sharedarea_read8($id, $_) } 8, 9), '52,18', 'in map');
is_deeply([ sort { $a <=> $b } uwsgi::sharedarea_read8($id, 9), uwsgi::sharedarea_read8($id, 8) ],
          [ 18, 52 ], 'in sort');
my $t = uwsgi::sharedarea_read16($id, 8) ? 'true' : 'false';
is($t, 'true', 'in a condition');

# --- argument lists ------------------------------------------------------------
my @a = ($id, 8);
is(r64_args(@a), 0x1234, 'arguments from an array');
is(uwsgi::sharedarea_read64(@a[0, 1]), 0x1234, 'from a slice');
for my $bad ([$id], [ $id, 8, 1 ], []) {
    my $ok = eval { r64_args(@$bad); 1 };
    like($@, qr/^Usage: uwsgi::sharedarea_read64\(id, pos\) at \Q$0\E line \d+\.$/,
         scalar(@$bad) . ' arguments from an array: usage croak');
}
{
    my $fetched = 0;
    package CountFetch {
        sub TIESCALAR { my ($c, $v, $n) = @_; bless [ $v, $n ], $c }
        sub FETCH     { ${ $_[0][1] }++; $_[0][0] }
    }
    tie my $pos, 'CountFetch', 8, \$fetched;
    is(uwsgi::sharedarea_read64($id, $pos), 0x1234, 'a tied position');
    is($fetched, 1, '... fetched once');
}

# --- every function the table calls directly, with each of its argument counts ---
# (uwsgi-functions.tsv: direct yes) a call site naming it gives what a call
# through a code reference (always pp_entersub) gives: results in scalar and
# list context, the bytes it leaves, and its croak for one argument too many.
for my $r (grep { $_->{direct} eq 'yes' } uwsgi_functions()) {
    my $name = $r->{name};
    for my $n ($r->{required} .. @{ $r->{params} }) {
        my $list = join ', ', map { "\$_[$_]" } 0 .. $n - 1;
        my $direct = eval "sub { my \$s = uwsgi::$name($list); my \@r = uwsgi::$name($list); [ \$s, \@r ] }"
            or die $@;
        my $plain = do { no strict 'refs'; \&{"uwsgi::$name"} };
        my (@got, @bytes);
        for my $call ($direct, sub { [ scalar($plain->(@_)), $plain->(@_) ] }) {
            my ($a) = lettered_area(64);
            push @got, $call->(shape_args($r, $a, $n));
            push @bytes, uwsgi::sharedarea_read($a, 0);
        }
        is_deeply($got[0], $got[1], "$name with $n arguments, called by name: the results of a plain call");
        is($bytes[0], $bytes[1], '... and the same bytes left');
    }
    my $more = join ', ', map { "\$_[$_]" } 0 .. @{ $r->{params} };
    my $too_many = eval "sub { uwsgi::$name($more) }" or die $@;
    like(err_of(sub { $too_many->(shape_args($r, $id), 0) }), qr/^Usage: uwsgi::\Q$name($r->{args})\E at /,
         "$name with one argument too many: its usage");
}

# --- croaks name the caller's line -----------------------------------------------
eval { uwsgi::sharedarea_read64($id, -1) }; my $line = __LINE__;
is($@, "sharedarea_read64: area 0: position -1 is negative at $0 line $line.\n", 'argument croak');
eval { uwsgi::sharedarea_inc32($id, 4094) }; $line = __LINE__;
like($@, qr/^sharedarea_inc32: area 0: 4 bytes at 4094 run past the end \(\d+ bytes\) at \Q$0\E line $line\.$/,
     'core croak');
eval { uwsgi::sharedarea_write(99, 0, 'x') }; $line = __LINE__;
like($@, qr/^sharedarea_write: .*no such area.* at \Q$0\E line $line\.$/, 'no such area');

# --- other ways of calling ---------------------------------------------------------
sub amp_current { &uwsgi::sharedarea_read64 }
is(amp_current($id, 8), 0x1234, '&name; with the current @_');
is(&uwsgi::sharedarea_read64($id, 8), 0x1234, '&name(...)');
my $code = \&uwsgi::sharedarea_read64;
is($code->($id, 8), 0x1234, 'through a code reference');
is(eval 'uwsgi::sharedarea_read64($id, 8)', 0x1234, 'compiled by a string eval');
is(SharedArea::sharedarea_read64($id, 8), 0x1234, 'as SharedArea::sharedarea_read64');
like(B::Deparse->new->coderef2text(\&r64), qr/uwsgi::sharedarea_read64\(\$_\[0\], \$_\[1\]\)/,
     'B::Deparse sees an ordinary call');

# --- a name given another sub reaches that sub --------------------------------------
{
    no warnings 'redefine';
    local *uwsgi::sharedarea_read64 = sub { "mock(@_)" };
    is(r64($id, 8), "mock($id 8)", 'local *name = sub {...}: the mock is called');
    is(r64_args($id, 8), "mock($id 8)", '... also with arguments from an array');
}
is(r64($id, 8), 0x1234, 'after the local: the function again');
{
    no warnings 'redefine';
    *uwsgi::sharedarea_read64 = sub { 'replaced' };
    is(r64($id, 8), 'replaced', 'glob assigned a perl sub: it is called');
    *uwsgi::sharedarea_read64 = \&SharedArea::sharedarea_read8;
    is(r64($id, 8), 0x34, 'glob assigned another XS function: that one is called');
    *uwsgi::sharedarea_read64 = \&SharedArea::sharedarea_read64;
    is(r64($id, 8), 0x1234, 'and back');
}

# --- the debugger sees every call -----------------------------------------------------
{
    my @inc = map { "-I$_" } grep { !ref } @INC;
    my $prog = 'use SharedArea "1"; uwsgi::sharedarea_read64(0, 0) for 1 .. 3; '
             . 'uwsgi::sharedarea_write(0, 0, "x") for 1 .. 2; '
             . 'print join(",", map { $DB::calls{"SharedArea::$_"} // 0 } '
             . 'qw(sharedarea_read64 sharedarea_write)), "\n"';
    local $ENV{PERLDB_OPTS} = '';
    my $out = `$^X @inc -It/lib -d:SharedAreaCalls -e '$prog' 2>&1`;
    is($out, "3,2\n", 'under perl -d every call goes through DB::sub');
}

# --- more ways to call: local, code refs, string eval, methods, &name;, threads ---

my ($rid, $RDATA) = lettered_area(16384);
sub want { my ($pos, $len) = @_; substr($RDATA, $pos, $len) }

{
    no warnings 'redefine';
    {
        local *uwsgi::sharedarea_read = sub { 'LOCAL' };
        is(uwsgi::sharedarea_read($rid, 0, 3), 'LOCAL', 'local *uwsgi::sharedarea_read: the local sub is called');
        local *uwsgi::sharedarea_read8 = \&SharedArea::sharedarea_read16;
        is(uwsgi::sharedarea_read8($rid, 0), unpack('s', want(0, 2)), 'read8 pointed at read16 (same ALIAS group): read16 runs');
    }
    is(uwsgi::sharedarea_read($rid, 0, 3), want(0, 3), '... restored after the scope');
    my $c = \&uwsgi::sharedarea_read;
    is($c->($rid, 0, 2) . &$c($rid, 2, 2), want(0, 4), 'calls through a code ref');
    is(eval 'uwsgi::sharedarea_read($rid, 1, 2)', want(1, 2), 'string eval');
    like(err_of(sub { uwsgi->sharedarea_read(0, 3) }), qr/^sharedarea_read: area id "uwsgi" is not a number/,
        'method-call syntax passes the class as the id (dies clearly)');
    my $amp = sub { &uwsgi::sharedarea_read };
    is($amp->($rid, 3, 2), want(3, 2), '&name; with the caller\'s @_');
    my $x = (uwsgi::sharedarea_read($rid, 0, 1), uwsgi::sharedarea_read($rid, 1, 1));
    is($x, want(1, 1), 'comma operator in scalar context');
    my $n = () = uwsgi::sharedarea_read8($rid, 0);
    is($n, 1, 'one value in list context');
}

SKIP: {
    skip 'perl without ithreads', 2 unless $Config{useithreads};
    require threads;
    my @t = map {
        my $k = $_;
        threads->create(sub {
            my $ok = 0;
            for my $i (0 .. 500) {
                my $p = ($i * 7 + $k) % 10000;
                my $l = 4095 + $i % 3;
                my $v = uwsgi::sharedarea_read($rid, $p, $l);
                $ok++ if $v eq substr($RDATA, $p, $l);
                uwsgi::sharedarea_inc64($rid, 16100);
            }
            return $ok;
        });
    } 0 .. 3;
    is_deeply([ map { $_->join } @t ], [ (501) x 4 ], 'threads: direct calls at the TARG boundary read the right bytes');
    my $e = threads->create(sub { err_of(sub { uwsgi::sharedarea_read($rid, length($RDATA) - 4, 10) }) })->join;
    like($e, qr/^sharedarea_read: area $rid: 10 bytes at 16380 run past the end/, 'threads: an error names this thread\'s failure');
}

# --- undefined: perl's own error ----------------------------------------------------------
undef &SharedArea::sharedarea_dec8;
eval { d8($id, 8) }; $line = __LINE__;
like($@, qr/^Undefined subroutine &SharedArea::sharedarea_dec8 called at \Q$0\E line \d+\.$/,
     'an undefined function: perl\'s "Undefined subroutine"');


# --- the off switch: every check above passes with the direct calls turned off ---
if (!$ENV{SHAREDAREA_NO_DIRECT_CALLS}) {
    my @inc = map { "-I$_" } grep { !ref } @INC;
    local $ENV{SHAREDAREA_NO_DIRECT_CALLS} = 1;
    my $out = `$^X @inc $0 2>&1`;
    is($?, 0, 'with SHAREDAREA_NO_DIRECT_CALLS=1 (every call through pp_entersub) this file passes too')
        or diag($out);
}

done_testing();
