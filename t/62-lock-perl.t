# The lock from Perl (issue 8): rlock/wlock take an optional timeout that
# dies naming the holder; a %SIG handler runs promptly while rlock/wlock wait
# and a handler that dies leaves no lock held; SharedArea::rlock_guard /
# wlock_guard hold the lock for the guard's scope; Plack::Middleware::SharedArea
# releases a lock still held when a request ends, with a warning naming the
# area. Real processes throughout (fork; a real Starman when installed).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Handle;
use POSIX ();
use SharedAreaTest::Proc qw(require_blib tmpdir write_file slurp start_starman stop_server http_get
    http_send guard_test wait_child);

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea;

guard_test(240);

my $name = "satest-locks-$$";
my $id = SharedArea::init("name=$name,size=4096");
my $owner = $$;
END { eval { SharedArea::remove($name) } if $name && $$ == $owner }

# A process that holds the write lock (or, with 'r', the read lock) until it
# is told to let go (or for $hold seconds). Returns { pid, go => sub }.
sub holder {
    my ($mode, $hold) = @_;
    pipe(my $ready_r, my $ready_w) or die "pipe: $!";
    pipe(my $go_r, my $go_w) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $ready_r;
        close $go_w;
        $mode eq 'r' ? uwsgi::sharedarea_rlock($id) : uwsgi::sharedarea_wlock($id);
        syswrite $ready_w, "1";
        my $rin = '';
        vec($rin, fileno $go_r, 1) = 1;
        select(my $rout = $rin, undef, undef, $hold // 20);
        uwsgi::sharedarea_unlock($id);
        POSIX::_exit(0);
    }
    close $ready_w;
    close $go_r;
    sysread($ready_r, my $b, 1) == 1 or die "the holder did not take the lock";
    return { pid => $pid, go => sub { close $go_w; return wait_child($pid, 10) } };
}

# Runs CODE in a child; returns its exit status (0: CODE returned true).
sub in_child {
    my ($code) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        alarm 20;
        my $ok = eval { $code->() };
        print STDERR "child: $@" if !$ok && $@;
        POSIX::_exit($ok ? 0 : 1);
    }
    return wait_child($pid, 30);
}

sub timed (&) { my $t = time; my $ok = eval { $_[0]->(); 1 }; return (time - $t, $ok ? '' : $@) }

# --- timeouts ---------------------------------------------------------------------
{
    my $h = holder('w');
    my ($took, $err) = timed { uwsgi::sharedarea_wlock($id, 0.5) };
    like($err, qr/^sharedarea_wlock: area \d+: timed out after 0\.5 s/, 'wlock with a 0.5 s timeout dies saying it timed out');
    like($err, qr/\b$h->{pid}\b/, '... and names the holding process');
    like($err, qr/held by pid $h->{pid} \(for at least (?:0\.(?:4[5-9]|[5-9])|[1-9])[\d.]* s\)/,
        '... and for how long it has held it (at least the whole wait)');
    like($err, qr/ at \Q$0\E line \d+\.$/, '... at the caller');
    cmp_ok($took, '>=', 0.45, "... after the timeout ($took s)");
    cmp_ok($took, '<', 2.5, '... not much more');
    is(SharedArea::held($id), 0, '... and holds nothing');

    ($took, $err) = timed { uwsgi::sharedarea_rlock($id, 0.3) };
    like($err, qr/^sharedarea_rlock: area \d+: timed out after 0\.3 s/, 'rlock times out behind a writer');
    like($err, qr/\b$h->{pid}\b/, '... naming the writer');

    ($took, $err) = timed { uwsgi::sharedarea_wlock($id, 0) };
    like($err, qr/^sharedarea_wlock: area \d+: timed out/, 'timeout 0 tries once');
    cmp_ok($took, '<', 1, '... at once');

    ($took, $err) = timed { my $g = SharedArea::wlock_guard($id, 0.2) };
    like($err, qr/^SharedArea::wlock_guard: area \d+: timed out after 0\.2 s/, 'wlock_guard with a timeout dies, naming itself');
    like($err, qr/ at \Q$0\E line \d+\.?\n/, '... at the caller');

    ok(!eval { uwsgi::sharedarea_wlock($id, -1); 1 }, 'a negative timeout dies');
    like($@, qr/^sharedarea_wlock: area \d+: timeout -1 is negative/, '... saying so');
    ok(!eval { uwsgi::sharedarea_wlock($id, 'soon'); 1 }, 'a non-numeric timeout dies');
    ok(!eval { uwsgi::sharedarea_wlock($id, 1, 2); 1 }, 'a third argument dies');
    like($@, qr/^Usage: uwsgi::sharedarea_wlock\(id\[, timeout\]\)/, '... with the usage');
    is($h->{go}->(), 0, 'the holder unlocked and exited');

    is(uwsgi::sharedarea_wlock($id, 2), 1, 'then wlock with a timeout takes the free lock');
    is(SharedArea::held($id), 2, '... held(): 2, the write lock');
    is(uwsgi::sharedarea_unlock($id), 1, '... and unlock');
    is(uwsgi::sharedarea_rlock($id, undef), 1, 'an undef timeout waits without limit (the lock is free)');
    is(SharedArea::held($id), 1, '... held(): 1, the read lock');
    uwsgi::sharedarea_unlock($id);
    is(SharedArea::held($id), 0, 'held(): 0 after the unlock');
}

# --- signals during a blocked rlock/wlock ---------------------------------------------
{
    my $h = holder('w');
    my $ran;
    my $t0 = time;
    {
        local $SIG{ALRM} = sub { $ran = time - $t0 };
        Time::HiRes::alarm(0.33);
        my ($took, $err) = timed { uwsgi::sharedarea_wlock($id, 2.5) };
        like($err, qr/timed out after 2\.5 s/, 'a wlock that a handler did not stop still times out');
        # (at once, as a rule; 1 s at worst, when the signal lands while the core is not asleep)
        ok(defined $ran && $ran < 1.8, sprintf('... but the SIGALRM handler ran while it waited (%.2f s after the start)', $ran // -1));
    }
    for my $mode (qw(wlock rlock)) {
        local $SIG{ALRM} = sub { die "alarm in $mode\n" };
        Time::HiRes::alarm(0.33);
        my $f = \&{"uwsgi::sharedarea_$mode"};
        my ($took, $err) = timed { $f->($id) };    # no timeout: only the handler ends it
        Time::HiRes::alarm(0);
        is($err, "alarm in $mode\n", "a SIGALRM handler that dies ends a blocked $mode with its error");
        cmp_ok($took, '<', 3, sprintf('... promptly (%.2f s; the holder keeps the lock 20 s)', $took));
        is(SharedArea::held($id), 0, '... and no lock is held');
    }
    {
        local $SIG{ALRM} = sub { die "alarm in a guard\n" };
        Time::HiRes::alarm(0.33);
        my ($took, $err) = timed { my $g = SharedArea::wlock_guard($id) };
        Time::HiRes::alarm(0);
        is($err, "alarm in a guard\n", 'the same for wlock_guard');
        is(SharedArea::held($id), 0, '... no lock is held');
    }
    is($h->{go}->(), 0, 'the holder unlocked and exited');
    is(in_child(sub { uwsgi::sharedarea_wlock($id, 2); uwsgi::sharedarea_unlock($id); 1 }), 0,
        'another process then takes the write lock: the interrupted calls left nothing behind');

    # a handler that returns: the wait goes on and gets the lock
    $h = holder('r', 1);
    my $calls = 0;
    local $SIG{ALRM} = sub { $calls++ };
    Time::HiRes::alarm(0.33);
    my ($took, $err) = timed { uwsgi::sharedarea_wlock($id) };
    is($err, '', 'a handler that returns: the blocked wlock goes on and takes the lock when the reader lets go');
    is($calls, 1, '... the handler ran once');
    cmp_ok($took, '>=', 0.9, sprintf('... after the reader left (%.2f s)', $took));
    is(SharedArea::held($id), 2, '... and holds the write lock');
    uwsgi::sharedarea_unlock($id);
    wait_child($h->{pid}, 10);
}

# --- a stream of readers does not starve a waiting writer --------------------------------
{
    # The XS sleeps in the core in slices (to see signals); between two
    # slices the writer must not lose its place to readers that each hold
    # the lock longer than a slice. Six readers overlap, each holding 0.3 s.
    my $end = time + 4;
    my @readers = map {
        my $k = $_;
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            sleep 0.05 * $k;
            while (time < $end) { uwsgi::sharedarea_rlock($id); sleep 0.3; uwsgi::sharedarea_unlock($id) }
            POSIX::_exit(0);
        }
        $pid;
    } 0 .. 5;
    sleep 0.6;
    my ($took, $err) = timed { uwsgi::sharedarea_wlock($id, 3) };
    is($err, '', 'a writer behind six overlapping readers (0.3 s holds each) gets the lock');
    cmp_ok($took, '<', 2.5, sprintf('... within a few reader holds (%.2f s), not starved', $took));
    uwsgi::sharedarea_unlock($id) unless $err;
    wait_child($_, 10) for @readers;
}

# --- guards ---------------------------------------------------------------------------
{
    {
        my $g = SharedArea::wlock_guard($id);
        isa_ok($g, 'SharedArea::LockGuard', 'wlock_guard returns a guard');
        is(SharedArea::held($id), 2, '... that holds the write lock');
        is(in_child(sub { !eval { uwsgi::sharedarea_wlock($id, 0); 1 } }), 0, '... which another process cannot take');
    }
    is(SharedArea::held($id), 0, 'the lock is released when the guard goes out of scope');
    is(in_child(sub { uwsgi::sharedarea_wlock($id, 0); uwsgi::sharedarea_unlock($id); 1 }), 0, '... and another process takes it at once');

    ok(!eval { my $g = SharedArea::wlock_guard($id); uwsgi::sharedarea_write($id, 0, 'half'); die "boom\n" }, 'a die under a guard');
    is($@, "boom\n", '... propagates');
    is(SharedArea::held($id), 0, '... and leaves no lock held');
    is(in_child(sub { uwsgi::sharedarea_wlock($id, 0); uwsgi::sharedarea_unlock($id); 1 }), 0, '... for any process');

    sub under_guard { my $g = SharedArea::rlock_guard($id); return SharedArea::held($id) }
    is(under_guard(), 1, 'rlock_guard holds the read lock');
    is(SharedArea::held($id), 0, '... released by the return');

    {
        my $outer = SharedArea::rlock_guard($id);
        my $inner = SharedArea::rlock_guard($id);
        is($inner->release, 1, 'release() releases early');
        is($inner->release, 0, '... once');
        is(SharedArea::held($id), 1, '... the outer read lock stays');
    }
    is(SharedArea::held($id), 0, 'nested guards: all released');

    {
        my $g = SharedArea::wlock_guard($id);
        my $pid = fork // die "fork: $!";
        if (!$pid) { undef $g; exit 0 }    # the child's copy of the guard: destroyed, releases nothing
        wait_child($pid, 10);
        is(SharedArea::held($id), 2, 'a forked child that drops its copy of the guard releases nothing');
        is(in_child(sub { !eval { uwsgi::sharedarea_wlock($id, 0); 1 } }), 0, '... the lock is still taken');
    }
    is(SharedArea::held($id), 0, '... until the parent\'s guard goes');

    SKIP: {
        require Config;
        skip 'this perl has no ithreads', 2 unless $Config::Config{useithreads};
        require threads;
        my $g = SharedArea::wlock_guard($id);
        my $copy = threads->create(sub { return ref $g eq 'SharedArea::LockGuard' ? 'a guard' : 'no guard' })->join;
        is($copy, 'no guard', 'a new ithread gets no copy of the guard (it does not hold the lock)');
        is(SharedArea::held($id), 2, '... and the creator still holds it');
    }
    is(SharedArea::held($id), 0, '... until its guard goes');

    ok(!eval { SharedArea::wlock_guard(); 1 }, 'wlock_guard() without an id dies');
    like($@, qr/^Usage: SharedArea::wlock_guard\(id\[, timeout\]\)/, '... with the usage');
    ok(!eval { SharedArea::rlock_guard(99); 1 }, 'rlock_guard of an area that does not exist dies');
    like($@, qr/^SharedArea::rlock_guard: area 99: no such area/, '... naming the function and the area');
}

# --- the middleware releases a lock left at the end of a request ---------------------------
{
    require Plack::Middleware::SharedArea;
    my @warn;
    local $SIG{__WARN__} = sub { push @warn, $_[0] };
    my %env = (REQUEST_METHOD => 'GET', REQUEST_URI => '/leak', SERVER_PROTOCOL => 'HTTP/1.1', 'psgi.errors' => \*STDERR);

    my $app = Plack::Middleware::SharedArea->wrap(sub { uwsgi::sharedarea_wlock($id); die "oops\n" });
    ok(!eval { $app->({%env}); 1 }, 'an app that dies holding the write lock: the error propagates');
    is(SharedArea::held($id), 0, '... and the middleware released the lock');
    like("@warn", qr/ended holding the write lock of area $id; released it \(1 level\)/, '... with a warning naming the area');

    @warn = ();
    $app = Plack::Middleware::SharedArea->wrap(sub {
        uwsgi::sharedarea_rlock($id) for 1 .. 2;
        return [ 200, [], ['ok'] ];
    });
    is($app->({%env})->[0], 200, 'an app that returns holding the read lock twice');
    is(SharedArea::held($id), 0, '... both levels released');
    like("@warn", qr/ended holding the read lock of area $id; released it \(2 levels\)/, '... with a warning');

    @warn = ();
    $app = Plack::Middleware::SharedArea->wrap(sub {
        return sub { my ($respond) = @_; uwsgi::sharedarea_wlock($id); $respond->([ 200, [], ['streamed'] ]) };
    });
    my $res = $app->({%env, 'psgi.streaming' => 1});
    is(ref $res, 'CODE', 'a streaming app');
    $res->(sub { return });
    is(SharedArea::held($id), 0, '... its callback\'s lock is released when the callback returns');
    like("@warn", qr/area $id/, '... with a warning');

    @warn = ();
    $app = Plack::Middleware::SharedArea->wrap(sub { my $g = SharedArea::wlock_guard($id); return [ 200, [], ['guarded'] ] });
    $app->({%env});
    is("@warn", '', 'an app that locks with a guard leaves nothing to release, and no warning');
    is(in_child(sub { uwsgi::sharedarea_wlock($id, 0); uwsgi::sharedarea_unlock($id); 1 }), 0, 'after all of these, another process takes the lock at once');
}

# --- the same under a real Starman: workers are separate processes -----------------------------
SKIP: {
    my $starman_ok = SharedAreaTest::Proc::find_program('starman') && SharedAreaTest::Proc::have_module('Starman');
    skip 'Starman is not installed (scripts/ensure-deps installs it)', 9 unless $starman_ok;
    my @blib = require_blib();
    my $dir = tmpdir();
    my $psgi = write_file("$dir/locks.psgi", join('', map { "use lib '$_';\n" } reverse @blib) . <<"PSGI");
use strict;
use warnings;
use Plack::Builder;
use SharedArea;
my \$id = SharedArea::init('name=$name');
my \$app = sub {
    my (\$env) = \@_;
    if (\$env->{PATH_INFO} eq '/leak') { uwsgi::sharedarea_wlock(\$id); die "leaked a lock\\n" }
    if (\$env->{PATH_INFO} eq '/leak-read') { uwsgi::sharedarea_rlock(\$id); return [ 200, [], ["read \$\$\\n"] ] }
    if (\$env->{PATH_INFO} eq '/block') {
        open my \$fh, '>', "$dir/blocked.pid" or die \$!;
        print {\$fh} \$\$;
        close \$fh;
        uwsgi::sharedarea_wlock(\$id);
        uwsgi::sharedarea_unlock(\$id);
        return [ 200, [], ["unblocked\\n"] ];
    }
    my \$ok = eval { uwsgi::sharedarea_wlock(\$id, 2); uwsgi::sharedarea_inc64(\$id, 64); uwsgi::sharedarea_unlock(\$id); 1 };
    return [ \$ok ? 200 : 503, [], [ \$ok ? "wrote \$\$\\n" : "\$\@" ] ];
};
builder { enable 'SharedArea'; \$app };
PSGI
    my $srv = start_starman(app => $psgi, workers => 2, dir => $dir);
    my ($st) = http_get($srv->{port}, '/leak');
    is($st, 500, 'Starman: a request that dies holding the write lock gets a 500');
    my $t = time;
    is(in_child(sub { uwsgi::sharedarea_wlock($id, 2); uwsgi::sharedarea_unlock($id); 1 }), 0,
        'Starman: another process then takes the lock (the worker released it)');
    cmp_ok(time - $t, '<', 3, '... at once');
    ($st) = http_get($srv->{port}, '/leak-read');
    my @st = map { (http_get($srv->{port}, '/write'))[0] } 1 .. 6;
    is("@st", '200 ' x 5 . '200', 'Starman: after a request that left the read lock, every worker writes');
    my $log = slurp("$dir/starman-$srv->{port}.log") // '';
    like($log, qr/ended holding the write lock of area \d+; released it/, 'Starman: the worker log names the area (write lock)');
    like($log, qr/ended holding the read lock of area \d+; released it/, '... and the read lock');

    # A worker blocked in wlock is stopped at once by TERM: Net::Server's
    # handler (exit) runs during the wait.
    uwsgi::sharedarea_wlock($id);
    my $req = http_send($srv->{port}, '/block');
    my $deadline = time + 10;
    sleep 0.05 until -s "$dir/blocked.pid" || time > $deadline;
    my $wpid = slurp("$dir/blocked.pid");
    sleep 0.5;    # now waiting in wlock
    ok($wpid && kill(0, $wpid), 'Starman: a worker waits in wlock for the lock this test holds');
    my $t0 = time;
    kill 'TERM', $wpid if $wpid;
    sleep 0.05 while $wpid && kill(0, $wpid) && time - $t0 < 5;
    cmp_ok(time - $t0, '<', 4, sprintf('Starman: TERM ends the waiting worker at once (%.2f s)', time - $t0));
    is(SharedArea::held($id), 2, '... and this process still holds the lock it took');
    uwsgi::sharedarea_unlock($id);
    close $req;
    stop_server($srv);
}

done_testing();
