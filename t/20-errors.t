# Every bad call dies with a message that names the Perl function, the area
# and the cause, and changes nothing: the area's bytes, its update counter and
# the number of areas are checked after each one.
use strict;
use warnings;
use Test::More;
use POSIX ();
use Time::HiRes qw(time);

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea;

alarm 60;

my $id   = SharedArea::init('1');
my $size = SharedArea::info($id)->{size};
my $S    = $size;
uwsgi::sharedarea_write($id, 0, join '', map { chr(($_ * 7 + 3) % 256) } 0 .. $size - 1);

my @fixed  = qw(read readfast write read8 read16 read32 read64 write8 write16 write32 write64
                inc8 inc16 inc32 inc64 dec8 dec16 dec32 dec64);
my @id_only = qw(wait update rlock wlock unlock);

# How to call each function with a given id and position (other arguments valid).
my %call = (
    read     => sub { uwsgi::sharedarea_read($_[0], $_[1], 1) },
    readfast => sub { my $b = ''; uwsgi::sharedarea_readfast($_[0], $_[1], $b, 1) },
    write    => sub { uwsgi::sharedarea_write($_[0], $_[1], 'x') },
    wait     => sub { uwsgi::sharedarea_wait($_[0], 0, 0.01) },
    (map { my $f = "uwsgi::sharedarea_$_"; my $w = $_ =~ /write/; no strict 'refs';
           ($_ => $w ? sub { &$f($_[0], $_[1], 1) } : sub { &$f($_[0], $_[1]) }) }
         grep { /\d/ } @fixed),
    (map { my $f = "uwsgi::sharedarea_$_"; no strict 'refs'; ($_ => sub { &$f($_[0]) }) }
         qw(update rlock wlock unlock)),
);

my @cases;    # [ description, code, qr/message/ ]
sub case { push @cases, [@_] }

# --- every function: an area that does not exist, a negative and a bogus id
for my $f (@fixed, @id_only) {
    my $c = $call{$f};
    case("$f: id 99",    sub { $c->(99, 0) },    qr/^sharedarea_$f: area 99: no such area/);
    case("$f: id -1",    sub { $c->(-1, 0) },    qr/^sharedarea_$f: area -1: no such area/);
    case("$f: id 1.5",   sub { $c->(1.5, 0) },   qr/^sharedarea_$f: area 1.5: no such area/);
    case("$f: id 2**40", sub { $c->(2**40, 0) }, qr/^sharedarea_$f: area 1099511627776: no such area/);
    case("$f: id 'abc'", sub { $c->('abc', 0) }, qr/^sharedarea_$f: area id "abc" is not a number/);
    case("$f: id undef", sub { $c->(undef, 0) }, qr/^sharedarea_$f: area id is undef/);
}

# --- every function with a position: bad positions
for my $f (@fixed) {
    my $c = $call{$f};
    case("$f: pos -1",       sub { $c->($id, -1) },      qr/^sharedarea_$f: area 0: position -1 is negative/);
    case("$f: pos = size",   sub { $c->($id, $S) },      qr/^sharedarea_$f: area 0: (position $S is (at or )?past the end|1 bytes at $S run past)/);
    case("$f: pos size+100", sub { $c->($id, $S + 100) }, qr/^sharedarea_$f: area 0: /);
    case("$f: pos 'abc'",    sub { $c->($id, 'abc') },   qr/^sharedarea_$f: area 0: position "abc" is not a number/);
    case("$f: pos ''",       sub { $c->($id, '') },      qr/^sharedarea_$f: area 0: position "" is not a number/);
    case("$f: pos '12abc'",  sub { $c->($id, '12abc') }, qr/^sharedarea_$f: area 0: position "12abc" is not a number/);
    case("$f: pos undef",    sub { $c->($id, undef) },   qr/^sharedarea_$f: area 0: position is undef/);
    case("$f: pos 1.5",      sub { $c->($id, 1.5) },     qr/^sharedarea_$f: area 0: position 1.5 is not an integer/);
    case("$f: pos 2**64",    sub { $c->($id, 2**64) },   qr/^sharedarea_$f: area 0: position \S+ is too large/);
    case("$f: pos 2**70",    sub { $c->($id, 2**70) },   qr/^sharedarea_$f: area 0: position \S+ is too large/);
    case("$f: pos NaN",      sub { $c->($id, 'NaN') },   qr/^sharedarea_$f: area 0: position NaN is not a finite number/);
    case("$f: pos -inf",     sub { $c->($id, -9**9**9) }, qr/^sharedarea_$f: area 0: position -Inf is not a finite number/);
    case("$f: pos ref",      sub { $c->($id, [1]) },     qr/^sharedarea_$f: area 0: position is a reference/);
}

# --- lengths that overflow or make no sense
for my $f (qw(read readfast)) {
    my $c = $f eq 'read'
        ? sub { uwsgi::sharedarea_read($id, $_[0], $_[1]) }
        : sub { my $b = ''; uwsgi::sharedarea_readfast($id, $_[0], $b, $_[1]) };
    my $p = "sharedarea_$f: area 0:";
    case("$f: len 2**64",      sub { $c->(0, 2**64) },    qr/^$p length \S+ is too large \(2\*\*64 or more\)/);
    case("$f: len 2**70",      sub { $c->(0, 2**70) },    qr/^$p length \S+ is too large/);
    case("$f: len '1e30'",     sub { $c->(0, '1e30') },   qr/^$p length 1e30 is too large/);
    case("$f: len 1e30",       sub { $c->(0, 1e30) },     qr/^$p length 1e\+30 is too large/);
    case("$f: len -1",         sub { $c->(0, -1) },       qr/^$p length -1 is negative/);
    case("$f: len 'x'",        sub { $c->(0, 'x') },      qr/^$p length "x" is not a number/);
    case("$f: len 2.5",        sub { $c->(0, 2.5) },      qr/^$p length 2.5 is not an integer/);
    case("$f: len undef",      sub { $c->(0, undef) },    qr/^$p length is undef/);
    case("$f: len size+1",     sub { $c->(0, $S + 1) },   qr/^$p \d+ bytes at 0 run past the end \($S bytes\)/);
    case("$f: len 2 at last",  sub { $c->($S - 1, 2) },   qr/^$p 2 bytes at \d+ run past the end/);
    case("$f: pos+len wraps",  sub { $c->(1, 18446744073709551615) }, qr/^$p 18446744073709551615 bytes at 1 run past the end/);
    case("$f: 2**63 at 2**63", sub { $c->(9223372036854775808, 9223372036854775808) }, qr/^$p /);
    case("$f: len 2**62",      sub { $c->(0, 2**62) },    qr/^$p \d+ bytes at 0 run past the end/);
}

# --- bad data and values
case('write: undef data',       sub { uwsgi::sharedarea_write($id, 0, undef) },
     qr/^sharedarea_write: area 0: data is undef/);
case('write: a wide char whose UTF-8 does not fit', sub { uwsgi::sharedarea_write($id, $S - 1, "\x{100}") },
     qr/^sharedarea_write: area 0: 2 bytes at \d+ run past the end/);
case('write: 2 bytes at last',  sub { uwsgi::sharedarea_write($id, $S - 1, 'ab') },
     qr/^sharedarea_write: area 0: 2 bytes at \d+ run past the end/);
case('write: pos+len wraps',    sub { uwsgi::sharedarea_write($id, 18446744073709551615, 'ab') },
     qr/^sharedarea_write: area 0: /);
for my $w (8, 16, 32, 64) {
    my $f = \&{"uwsgi::sharedarea_write$w"};
    my $p = "sharedarea_write$w: area 0:";
    case("write$w: value 'abc'", sub { $f->($id, 0, 'abc') }, qr/^$p value "abc" is not a number/);
    case("write$w: value undef", sub { $f->($id, 0, undef) }, qr/^$p value is undef/);
    case("write$w: value 1.5",   sub { $f->($id, 0, 1.5) },   qr/^$p value 1.5 is not an integer/);
    case("write$w: value 2**64", sub { $f->($id, 0, 2**64) }, qr/^$p value \S+ does not fit in 64 bits/);
    case("write$w: value -2**64", sub { $f->($id, 0, -2**64) }, qr/^$p value \S+ does not fit in 64 bits/);
    case("write$w: value Inf",   sub { $f->($id, 0, 'Inf') }, qr/^$p value Inf is not a finite number/);
    my $inc = \&{"uwsgi::sharedarea_inc$w"};
    case("inc$w: amount 'x'",    sub { $inc->($id, 0, 'x') },   qr/^sharedarea_inc$w: area 0: amount "x" is not a number/);
    case("inc$w: amount 2**65",  sub { $inc->($id, 0, 2**65) }, qr/^sharedarea_inc$w: area 0: amount \S+ does not fit/);
}

# --- wait
case('wait: timeout -1',     sub { uwsgi::sharedarea_wait($id, 0, -1) },    qr/^sharedarea_wait: area 0: timeout -1 is negative/);
case('wait: timeout "abc"',  sub { uwsgi::sharedarea_wait($id, 0, 'abc') }, qr/^sharedarea_wait: area 0: timeout "abc" is not a number/);
case('wait: timeout NaN',    sub { uwsgi::sharedarea_wait($id, 0, 'nan') }, qr/^sharedarea_wait: area 0: timeout \S+ is not a finite number/);
case('wait: freq -1',        sub { uwsgi::sharedarea_wait($id, -1, 1) },    qr/^sharedarea_wait: area 0: frequency -1 is negative/);
case('wait: freq undef',     sub { uwsgi::sharedarea_wait($id, undef, 1) }, qr/^sharedarea_wait: area 0: frequency is undef/);
case('wait: times out',      sub { uwsgi::sharedarea_wait($id, 0, 0.05) },  qr/^sharedarea_wait: area 0: timed out after 0.05 s/);

# --- locks used wrongly
case('unlock without lock', sub { uwsgi::sharedarea_unlock($id) }, qr/^sharedarea_unlock: area 0: this thread does not hold/);
case('write under rlock', sub {
    uwsgi::sharedarea_rlock($id);
    my $ok = eval { uwsgi::sharedarea_write($id, 0, 'x'); 1 };
    my $e = $@;
    uwsgi::sharedarea_unlock($id);
    die $e unless $ok;
}, qr/^sharedarea_write: area 0: this thread holds the area's read lock/);
case('inc64 under rlock', sub {
    uwsgi::sharedarea_rlock($id);
    my $ok = eval { uwsgi::sharedarea_inc64($id, 0); 1 };
    my $e = $@;
    uwsgi::sharedarea_unlock($id);
    die $e unless $ok;
}, qr/^sharedarea_inc64: area 0: this thread holds the area's read lock/);
case('wlock under rlock', sub {
    uwsgi::sharedarea_rlock($id);
    my $ok = eval { uwsgi::sharedarea_wlock($id); 1 };
    my $e = $@;
    uwsgi::sharedarea_unlock($id);
    die $e unless $ok;
}, qr/^sharedarea_wlock: area 0: this thread holds the read lock/);

# --- wrong numbers of arguments
my %usage = (
    'uwsgi::sharedarea_read(0)'                => 'uwsgi::sharedarea_read(id, pos[, len])',
    'uwsgi::sharedarea_read(0, 0, 1, 2)'       => 'uwsgi::sharedarea_read(id, pos[, len])',
    'uwsgi::sharedarea_readfast(0, 0)'         => 'uwsgi::sharedarea_readfast(id, pos, buf[, len])',
    'uwsgi::sharedarea_write(0, 0)'            => 'uwsgi::sharedarea_write(id, pos, data)',
    'uwsgi::sharedarea_write(0, 0, "a", 1)'    => 'uwsgi::sharedarea_write(id, pos, data)',
    'uwsgi::sharedarea_read32(0)'              => 'uwsgi::sharedarea_read32(id, pos)',
    'uwsgi::sharedarea_write16(0, 0)'          => 'uwsgi::sharedarea_write16(id, pos, value)',
    'uwsgi::sharedarea_dec64(0, 0, 1, 1)'      => 'uwsgi::sharedarea_dec64(id, pos[, amount])',
    'uwsgi::sharedarea_wait()'                 => 'uwsgi::sharedarea_wait(id[, freq[, timeout]])',
    'uwsgi::sharedarea_wlock()'                => 'uwsgi::sharedarea_wlock(id[, timeout])',
    'uwsgi::sharedarea_rlock(0, 1, 2)'         => 'uwsgi::sharedarea_rlock(id[, timeout])',
    'uwsgi::sharedarea_unlock(0, 1)'           => 'uwsgi::sharedarea_unlock(id)',
    'uwsgi::sharedarea_readbyte(0)'            => 'uwsgi::sharedarea_readbyte(id, pos)',
    'uwsgi::sharedarea_inclong(0, 1, 2, 3)'    => 'uwsgi::sharedarea_inclong(id, pos[, amount])',
    'SharedArea::init()'                       => 'SharedArea::init(spec)',
    'SharedArea::info()'                       => 'SharedArea::info(id)',
);
for my $code (sort keys %usage) {
    case("usage: $code", sub { eval "$code; 1" or die $@ }, qr/^Usage: \Q$usage{$code}\E at /);
}

# --- the SharedArea:: functions
for my $f (qw(info updates)) {
    my $c = \&{"SharedArea::$f"};
    case("$f: id 5",  sub { $c->(5) },  qr/^SharedArea::$f: area 5: no such area/);
    case("$f: id -1", sub { $c->(-1) }, qr/^SharedArea::$f: area -1: no such area/);
}
case('set_used: past the end', sub { SharedArea::set_used($id, $S + 1) }, qr/^SharedArea::set_used: area 0: used \d+ is past the end/);
case('set_used: -1',           sub { SharedArea::set_used($id, -1) },     qr/^SharedArea::set_used: area 0: used -1 is negative/);
case('set_used: id 9',         sub { SharedArea::set_used(9, 1) },        qr/^SharedArea::set_used: area 9: no such area/);
case('honour_used: id 9',      sub { SharedArea::honour_used(9, 1) },     qr/^SharedArea::honour_used: area 9: no such area/);

# --- bad specs: nothing is created
my %spec = (
    ''                           => qr/invalid spec "": it is empty/,
    '0'                          => qr/invalid spec "0": .*at least 1 page/,
    '-1'                         => qr/invalid spec "-1"/,
    'abc'                        => qr/invalid spec "abc"/,
    'pages=0'                    => qr/invalid spec "pages=0"/,
    'size=0'                     => qr/invalid spec "size=0"/,
    # the four specs uWSGI starts with: errors that say what uWSGI would do
    'pages=1,pages=2'            => qr/the key "pages" is given twice; uWSGI takes the last one, and would read this spec as "pages=2"/,
    'foo=1'                      => qr/unknown key "foo"/,
    'foo=1,pages=1'              => qr/unknown key "foo" .*uWSGI ignores unknown keys, and would read this spec as "pages=1"/,
    'pages=2,size=100'           => qr/pages= or size=, not both; uWSGI takes pages= and ignores size=, and would read this spec as "pages=2"/,
    'size=4096,offset=4096'      => qr/offset= applies only to file= and fd= areas; uWSGI ignores it here, and would read this spec as "size=4096"/,
    'ptr=0x1234'                 => qr/ptr= cannot be given in a spec/,
    'size='                      => qr/invalid spec "size="/,
    'size=12Q'                   => qr/invalid spec "size=12Q"/,
    'size=99999999999999999999999' => qr/invalid spec/,
    'pages=99999999999999'       => qr/cannot map \d+ bytes|invalid spec/,
    'file=/nonexistent/x'        => qr/cannot open \/nonexistent\/x/,
    'file=/etc/hostname,size=1M' => qr/shorter than/,
    'name=a/b,size=1'            => qr/may not contain '\/'/,
    "4\0"                        => qr/spec contains a NUL byte/,
    "\x{263A}"                   => qr/invalid spec "\xE2\x98\xBA"/,    # its UTF-8 bytes, as every string
);
for my $s (sort keys %spec) {
    (my $show = $s) =~ s/([^ -~])/sprintf '\\x{%x}', ord $1/ge;
    case("init '$show'", sub { SharedArea::init($s) }, qr/^SharedArea::init: (?s:.*)$spec{$s}/);
}
case('init undef', sub { SharedArea::init(undef) }, qr/^SharedArea::init: spec is undef/);

# --- run them all
my $count   = SharedArea::count();
my $bytes   = uwsgi::sharedarea_read($id, 0);
my $updates = SharedArea::updates($id);
my $file    = __FILE__;
cmp_ok(scalar @cases, '>=', 60, scalar(@cases) . ' bad calls');
for my $case (@cases) {
    my ($name, $code, $re) = @$case;
    my $ok = eval { $code->(); 1 };
    my $err = $@;
    ok(!$ok, "$name: dies");
    like($err, $re, "$name: message") or next;
    like($err, qr/ at \Q$file\E line \d+\.?\n\z|at \(eval \d+\) line \d+\.\n\z/, "$name: reported at the caller");
    is(uwsgi::sharedarea_read($id, 0), $bytes, "$name: no byte changed")
        or $bytes = uwsgi::sharedarea_read($id, 0);
    is(SharedArea::updates($id), $updates, "$name: no update counted")
        or $updates = SharedArea::updates($id);
    is(SharedArea::count(), $count, "$name: no area created")
        or $count = SharedArea::count();
}

# the area still works after all that
# --- what a failure tells besides its text ---------------------------------------
# Every failure dies with a SharedArea::Error: its string is the message above,
# and status, name, function, area and message tell Perl code what failed
# without reading the English.
{
    my %code = SharedArea::_statuses();
    my %want;
    open my $h, '<', 'include/sharedarea.h' or die "include/sharedarea.h: $!";
    while (<$h>) {
        $want{$1} = $2 if /^#define SHAREDAREA_((?:E_\w+|OK|RECOVERED)) (-?\d+)$/;
    }
    close $h;
    ok(scalar(keys %want) >= 14, 'the header defines the statuses');
    is_deeply(\%code, \%want, 'SharedArea::_statuses() is every status of the C header, by name');

    my @cases = (
        [ sub { uwsgi::sharedarea_read($id, $S - 2, 16) }, 'E_OUT_OF_RANGE', 'sharedarea_read', $id,
          "16 bytes at @{[ $S - 2 ]} run past the end ($S bytes)" ],
        [ sub { uwsgi::sharedarea_write8($id, -1, 1) }, 'E_INVALID_ARGUMENT', 'sharedarea_write8', $id,
          'position -1 is negative' ],
        [ sub { uwsgi::sharedarea_read(7, 0, 1) }, 'E_NO_SUCH_AREA', 'sharedarea_read', 7, undef ],
        [ sub { uwsgi::sharedarea_read(-1, 0, 1) }, 'E_NO_SUCH_AREA', 'sharedarea_read', undef,
          'area -1: no such area (the only area is 0)' ],
        [ sub { uwsgi::sharedarea_wait($id, 0, 0.01) }, 'E_TIMED_OUT', 'sharedarea_wait', $id,
          'timed out after 0.01 s' ],
        [ sub { SharedArea::init('pages=0') }, 'E_INVALID_SPEC', 'SharedArea::init', undef, undef ],
        [ sub { my $b = ''; uwsgi::sharedarea_readfast($id, 0, "lit", 1) }, 'E_INVALID_ARGUMENT',
          'sharedarea_readfast', $id, undef ],
    );
    for my $c (@cases) {
        my ($code, $name, $function, $area, $message) = @$c;
        $SharedArea::STATUS = 0;
        ok(!eval { $code->(); 1 }, "$function ($name) dies");
        my $e = $@;
        isa_ok($e, 'SharedArea::Error', "... $name");
        is($e->name, $name, "... name $name");
        is($e->status, $code{$name}, '... status is the number of that name');
        is(SharedArea::Error->code($name), $code{$name}, '... SharedArea::Error->code gives it too');
        is($SharedArea::STATUS, $code{$name}, '... and $SharedArea::STATUS holds it');
        is($e->function, $function, "... function $function");
        is($e->area, $area, '... area ' . (defined $area ? $area : 'undef'));
        is($e->message, $message, "... message") if defined $message;
        my $text = "$e";
        my $lead = defined $area ? "$function: area $area: " : "$function: ";
        is(substr($text, 0, length $lead), $lead, '... the text begins with the function and area');
        like($text, qr/\Q${\ $e->message }\E at \Q$0\E line \d+\.\n\z/, '... then the message and the caller\'s line, as croak');
        like($e, qr/^\Q$function\E: /, '... $@ =~ matches the text');
        ok($e eq $text && "prefix $e" eq "prefix $text", '... and it compares and joins as the text');
    }

    # "No such area" has one text, whether the core saw the id (7) or the id
    # could not be given to it (negative, fractional, past 2**31): the core's
    # wording about the id as the caller wrote it, with the same status.
    {
        my $core = do { local $@; eval { uwsgi::sharedarea_read(7, 0, 1) }; $@ };
        is($core->name, 'E_NO_SUCH_AREA', 'area 7 is no such area (the core says so)');
        my $said = $core->message;
        for my $bad (-1, 1.5, 2**31, 2**32 + 1, 2**40) {
            my $e = do { local $@; eval { uwsgi::sharedarea_read($bad, 0, 1) }; $@ };
            is(ref $e && $e->name, 'E_NO_SUCH_AREA', "area $bad: E_NO_SUCH_AREA");
            is(ref $e && $e->_cause, "area $bad: $said", "... in the core's words about area $bad");
        }
    }

    # Uncaught, it prints exactly its text, as a plain croak would.
    my $out = `$^X -Mblib -e 'use SharedArea "1"; uwsgi::sharedarea_read(0, 0, 1e9)' 2>&1`;
    is($out, "sharedarea_read: area 0: 1000000000 bytes at 0 run past the end (4096 bytes) at -e line 1.\n",
       'an uncaught failure prints its text');

    # A lock guard reports the lock's failure as its own, at the caller's line.
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $g = SharedArea::wlock_guard($id);
        select(undef, undef, undef, 1);
        undef $g;
        POSIX::_exit(0);
    }
    my $t = time + 5;
    select(undef, undef, undef, 0.02) until (eval { uwsgi::sharedarea_rlock($id, 0); uwsgi::sharedarea_unlock($id); 0 } // 1) || time > $t;
    my $line = __LINE__ + 1;
    my $ok = eval { my $g = SharedArea::rlock_guard($id, 0.05); 1 };
    my $e = $@;
    waitpid $pid, 0;
    ok(!$ok, 'rlock_guard behind a writer times out');
    isa_ok($e, 'SharedArea::Error', '... with a SharedArea::Error');
    is($e->name, 'E_TIMED_OUT', '... E_TIMED_OUT');
    is($e->function, 'SharedArea::rlock_guard', '... naming rlock_guard');
    like("$e", qr/^SharedArea::rlock_guard: area $id: timed out after 0.05 s waiting for the lock.* at \Q$0\E line $line\.\n\z/s,
         '... in its text too, at the caller\'s line');
}

# The examples in perldoc SharedArea's "Errors" are the real texts.
{
    my @pod;
    open my $fh, '<', $INC{'SharedArea.pm'} or die "$INC{'SharedArea.pm'}: $!";
    my $in = 0;
    while (<$fh>) {
        $in = /^=head2 Errors/ ? 1 : /^=/ ? 0 : $in;
        push @pod, $1 if $in && /^  (sharedarea_\w+: .*)$/;
    }
    close $fh;
    # In a process with one area of 4096 bytes, as the examples have.
    my @inc = map { "-I$_" } grep { !ref } @INC;
    my $prog = 'use SharedArea "1"; for my $c (sub { uwsgi::sharedarea_read(0, 4090, 16) }, '
             . 'sub { uwsgi::sharedarea_write8(0, -1, 1) }, sub { uwsgi::sharedarea_read(7, 0, 1) }, '
             . 'sub { uwsgi::sharedarea_read(-1, 0, 1) }, '
             . 'sub { uwsgi::sharedarea_wait(0, 0, 0.5) }) { eval { $c->(); 1 } or print "$@" }';
    my %real = map { s/ at \S+ line \d+\.\z//r => 1 } split /\n/, `$^X @inc -e '$prog'`;
    ok(scalar(@pod) >= 4, 'perldoc SharedArea shows error texts');
    ok($real{$_}, "the documented error text is real: $_") for @pod;
}

# --- decisions are made on the status, not on the wording -----------------------
# Every text reworded (as if src/status.rs and the XS said it differently): what
# the Perl layer does with a failure stays the same.
{
    no warnings 'redefine';
    local *SharedArea::Error::_cause = sub { 'reworded cause' };
    my $orig = overload::Method('SharedArea::Error', '""');
    {
        package SharedArea::Error;
        overload->import('""' => sub { 'REWORDED ' . $_[0]{status} }, fallback => 1);
    }
    like(eval { uwsgi::sharedarea_read($id, $S, 1) } // "$@", qr/^REWORDED -\d+\z/, 'reworded: the texts are reworded');
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $g = SharedArea::wlock_guard($id);
        select(undef, undef, undef, 1);
        undef $g;
        POSIX::_exit(0);
    }
    my $t = time + 5;
    select(undef, undef, undef, 0.02) until (eval { uwsgi::sharedarea_rlock($id, 0); uwsgi::sharedarea_unlock($id); 0 } // 1) || time > $t;
    my $ok = eval { my $g = SharedArea::rlock_guard($id, 0.05); 1 };
    my $e = $@;
    waitpid $pid, 0;
    ok(!$ok && ref $e, 'reworded: rlock_guard still reports the lock\'s timeout');
    is($e->function, 'SharedArea::rlock_guard', '... as its own');
    is($e->name, 'E_TIMED_OUT', '... E_TIMED_OUT');

    # A %SIG handler's die during a guard is passed on untouched.
    local $SIG{ALRM} = sub { die "handler\n" };
    my $pid2 = fork // die "fork: $!";
    if (!$pid2) {
        my $g = SharedArea::wlock_guard($id);
        select(undef, undef, undef, 1);
        undef $g;
        POSIX::_exit(0);
    }
    $t = time + 5;
    select(undef, undef, undef, 0.02) until (eval { uwsgi::sharedarea_rlock($id, 0); uwsgi::sharedarea_unlock($id); 0 } // 1) || time > $t;
    Time::HiRes::ualarm(100_000);
    $ok = eval { my $g = SharedArea::rlock_guard($id, 3); 1 };
    $e = $@;
    Time::HiRes::ualarm(0);
    waitpid $pid2, 0;
    is($e, "handler\n", 'reworded: a handler\'s die inside rlock_guard goes on as it was');
    {
        package SharedArea::Error;
        overload->import('""' => $orig, fallback => 1);
    }
    like(eval { uwsgi::sharedarea_read($id, $S, 1) } // "$@", qr/^sharedarea_read: /, 'the texts are back');
}
alarm 60;

is(uwsgi::sharedarea_write($id, 0, 'fine'), 1, 'the area still works');
is(uwsgi::sharedarea_wlock($id), 1, '... and its lock is free');
uwsgi::sharedarea_unlock($id);

done_testing();
