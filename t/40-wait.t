# sharedarea_wait: woken by the update itself (not polling), timeouts in
# seconds with fractions, signals run their handlers promptly (also handlers
# that redefine themselves or wait), and a stream of signals neither ends,
# shortens nor restarts a timeout.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea;
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedAreaTest::Area qw(err_of);

my $id = SharedArea::init('1');

# Runs CODE in a child after DELAY seconds; returns the pid.
sub later {
    my ($delay, $code) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        sleep $delay;
        eval { $code->(); 1 } or print STDERR "child: $@";
        POSIX::_exit(0);
    }
    return $pid;
}

sub timed (&) { my $t = time; my @r = eval { $_[0]->() }; return (time - $t, $@, @r) }

alarm 120;    # a guard for the whole file (re-armed after the signal tests)

# --- timeouts
my ($took, $err) = timed { uwsgi::sharedarea_wait($id, 0, 1) };
like($err, qr/^sharedarea_wait: area 0: timed out after 1 s at /, 'a 1 s timeout dies saying it timed out');
cmp_ok($took, '>=', 0.95, '... after about 1 s');
cmp_ok($took, '<', 1.5, '... not much more');

($took, $err) = timed { uwsgi::sharedarea_wait($id, 100, 0.3) };
like($err, qr/^sharedarea_wait: area 0: timed out after 0.3 s/, 'a fractional timeout is honoured');
cmp_ok($took, '>=', 0.28, '... 0.3 s');
cmp_ok($took, '<', 0.8, '... not forever, not a whole second');

($took, $err) = timed { uwsgi::sharedarea_wait($id, 0, 0.0001) };
like($err, qr/timed out/, 'a tiny timeout is a timeout, not "forever"');
cmp_ok($took, '<', 0.5, '... and quick');

($took, $err) = timed { uwsgi::sharedarea_wait($id, 2500, 1) };
like($err, qr/timed out after 1 s/, 'freq longer than the timeout');
cmp_ok($took, '<', 1.5, '... does not stretch the timeout');

($took, $err) = timed { uwsgi::sharedarea_wait($id, 0, "0.2") };
like($err, qr/timed out after 0.2 s/, 'a timeout given as a string');

uwsgi::sharedarea_write($id, 0, 'before');
($took, $err) = timed { uwsgi::sharedarea_wait($id, 0, 0.3) };
like($err, qr/timed out/, 'an update before the call began does not count');

# --- woken by other processes' updates, quickly
my @lat;
for my $i (1 .. 7) {
    my $pid = later(0.15, sub { uwsgi::sharedarea_write($id, 16, pack 'd', time) });
    my ($t, $e, $r) = timed { uwsgi::sharedarea_wait($id, 0, 5) };
    my $latency = time - unpack 'd', uwsgi::sharedarea_read($id, 16, 8);
    waitpid $pid, 0;
    is($e, '', "wait $i: woken") or next;
    is($r, 1, "wait $i: returns 1");
    push @lat, $latency;
}
@lat = sort { $a <=> $b } @lat;
my $median = $lat[@lat / 2];
diag(sprintf 'wake-up latency: median %.3f ms, max %.3f ms', 1000 * $median, 1000 * $lat[-1]);
cmp_ok($median, '<', 0.1, 'a write in another process wakes the waiter within 100 ms');
cmp_ok($lat[-1], '<', 0.5, '... every time');

for my $op (
    [update      => sub { uwsgi::sharedarea_update($id) }],
    [empty_write => sub { uwsgi::sharedarea_write($id, 100, '') }],
    [inc64       => sub { uwsgi::sharedarea_inc64($id, 200) }],
    [dec8        => sub { uwsgi::sharedarea_dec8($id, 300) }],
    [write32     => sub { uwsgi::sharedarea_write32($id, 300, 7) }],
) {
    my ($name, $code) = @$op;
    my $pid = later(0.1, $code);
    my ($t, $e) = timed { uwsgi::sharedarea_wait($id, 0, 3) };
    waitpid $pid, 0;
    is($e, '', "$name in another process wakes the waiter");
    cmp_ok($t, '<', 1, "... promptly");
}

my $pid = later(0.1, sub { uwsgi::sharedarea_read($id, 0, 8) for 1 .. 10; uwsgi::sharedarea_read64($id, 0) });
($took, $err) = timed { uwsgi::sharedarea_wait($id, 0, 0.6) };
waitpid $pid, 0;
like($err, qr/timed out/, 'reads do not wake a waiter');

$pid = later(0.1, sub { eval { uwsgi::sharedarea_write($id, 1 << 20, 'x') } });
($took, $err) = timed { uwsgi::sharedarea_wait($id, 0, 0.6) };
waitpid $pid, 0;
like($err, qr/timed out/, 'a failed write does not wake a waiter');

# --- signals during a wait that has no timeout
{
    local $SIG{ALRM} = sub { die "alarm handler died\n" };
    alarm 1;
    my $t = time;
    my $ok = eval { uwsgi::sharedarea_wait($id); 1 };
    my $e = $@;
    my $took = time - $t;
    alarm 0;
    ok(!$ok, 'a handler that dies ends a forever wait');
    is($e, "alarm handler died\n", '... with its exception');
    cmp_ok($took, '<', 1.5, '... promptly');
}
{
    my $ran_at;
    my $t = time;
    local $SIG{ALRM} = sub { $ran_at = time - $t };
    alarm 1;
    my $pid = later(2, sub { uwsgi::sharedarea_write($id, 0, 'wake') });
    my $ok = eval { uwsgi::sharedarea_wait($id, 0, 10) };
    my $took = time - $t;
    alarm 0;
    waitpid $pid, 0;
    is($ok, 1, 'a handler that returns lets the wait go on until the update');
    ok(defined $ran_at, '... the handler ran');
    cmp_ok($ran_at // 99, '<', 1.4, '... promptly, during the wait');
    cmp_ok($took, '>=', 1.9, '... and the wait went on after it');
    cmp_ok($took, '<', 3, '... until the write');
}
{
    my $ran = 0;
    local $SIG{ALRM} = sub { $ran++ };
    alarm 1;
    my $t = time;
    my $ok = eval { uwsgi::sharedarea_wait($id, 0, 2); 1 };
    my $took = time - $t;
    alarm 0;
    ok(!$ok, 'after a signal the timeout still applies');
    like($@, qr/timed out after 2 s/, '... and says so');
    cmp_ok($took, '<', 2.5, '... with the time that was left, not a fresh timeout');
    is($ran, 1, '... and the handler ran');
}
{
    my $ran = 0;
    local $SIG{USR1} = sub { $ran++ };
    my $parent = $$;
    my $pid = fork // die;
    if (!$pid) {
        for (1 .. 5) { sleep 0.1; kill 'USR1', $parent }
        sleep 0.2;
        uwsgi::sharedarea_write($id, 0, 'done');
        POSIX::_exit(0);
    }
    my $ok = eval { uwsgi::sharedarea_wait($id, 0, 5) };
    waitpid $pid, 0;
    is($ok, 1, 'several signals during one wait: it still returns on the update');
    cmp_ok($ran, '>=', 1, "... and the handler ran ($ran)");
}
alarm 60;

# --- handlers that redefine themselves or wait; a stream of signals --------------

{
    my $ran = 0;
    local $SIG{USR1};
    $SIG{USR1} = sub {
        $ran++;
        $SIG{USR1} = sub { $ran += 10 };                        # redefines itself
        eval { uwsgi::sharedarea_wait($id, 0, 0.05) };          # and waits itself
    };
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        sleep(0.1); kill USR1 => getppid;
        sleep(0.1); kill USR1 => getppid;
        sleep(0.1); uwsgi::sharedarea_update($id);
        POSIX::_exit(0);
    }
    my $t = time;
    my $e = err_of(sub { uwsgi::sharedarea_wait($id, 0, 5) });
    my $took = time - $t;
    waitpid $pid, 0;
    is($e, '', 'wait survives a handler that redefines itself and waits re-entrantly');
    is($ran, 11, '... both handlers ran');
    cmp_ok($took, '<', 2, '... and the update still woke it');

    local $SIG{ALRM} = sub { };
    Time::HiRes::ualarm(10_000, 10_000);
    $t = time;
    $e = err_of(sub { uwsgi::sharedarea_wait($id, 0, 0.4) });
    $took = time - $t;
    Time::HiRes::ualarm(0);
    like($e, qr/^sharedarea_wait: area 0: timed out after 0.4 s/, 'a stream of signals does not stop a timeout');
    cmp_ok($took, '>=', 0.38, '... nor shorten it');
    cmp_ok($took, '<', 1.5, '... nor restart it on every signal');
}
alarm 60;

# --- a nonexistent area dies at once
($took, $err) = timed { uwsgi::sharedarea_wait(5, 0, 1) };
like($err, qr/^sharedarea_wait: area 5: no such area/, 'waiting on an area that does not exist dies');
cmp_ok($took, '<', 0.2, '... at once, not after the timeout');

done_testing();
