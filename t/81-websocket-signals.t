#!/usr/bin/perl
# Signals during a WebSocket send to a client that stopped reading. The send
# waits for the socket outside the area's lock; a signal must not wait behind
# it: the %SIG handler runs at once, then the send goes on and the frame
# arrives whole. A handler that dies aborts the send: the frame's rest goes
# out before the next frame, is never sent to a new connection that reuses
# the fd number, and is dropped when the session ends. Under a real Starman
# (one worker), a worker stuck sending to a stalled client exits on TERM at
# once (it used to take up to 60 s, the stall limit).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Errno qw(EINTR EAGAIN);
use IO::Handle;
use IO::Select;
use POSIX ();
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC MSG_DONTWAIT);
use Time::HiRes ();
use SharedAreaTest::Proc qw(require_blib tmpdir write_file start_starman stop_server http_get guard_test);
use SharedAreaTest::WebSocket qw(ws_connect ws_next_frame client_frame);

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
SharedAreaTest::Proc::needs(programs => ['starman'], modules => ['Starman']);
require_blib();
require SharedArea;
require Plack::Middleware::SharedArea;

guard_test(150);

my $OWNER   = $$;
my $FRAME   = 4 * 1024 * 1024;            # bytes per frame: far more than a socket buffer holds
my $SIZE    = 8 * 1024 * 1024;
my $COUNTER = $SIZE - 8;                  # int64: sends the Starman app completed
my $KEY     = 'dGhlIHNhbXBsZSBub25jZQ==';
my $SHM     = sprintf 'satest81-%d-%d', $$, int rand 1e9;
my $SPEC    = "name=$SHM,size=$SIZE";
END { unlink "/dev/shm/$SHM" if $$ == $OWNER }

is(SharedArea::init($SPEC), 0, 'the test area is area 0');
uwsgi::sharedarea_write(0, 0, join '', map { sprintf '<%06x>', $_ } 0 .. $FRAME / 8 - 1);
my $AREA_BYTES = uwsgi::sharedarea_read(0, 0, $FRAME);
my $BUF_BYTES  = join '', map { sprintf '{%06x}', $_ } 0 .. $FRAME / 8 - 1;

sub header {
    my ($op, $len) = @_;
    my $h = chr(0x80 | $op);
    return $h . chr($len) if $len < 126;
    return $h . chr(126) . pack('n', $len) if $len < 65536;
    return $h . chr(127) . pack('Q>', $len);
}

# ---------------------------------------------------------------------------
# Plain Perl: a session on a socketpair, the sending side in a child process

sub request_env {
    my ($io) = @_;
    return {
        REQUEST_METHOD => 'GET', SERVER_PROTOCOL => 'HTTP/1.1', HTTP_UPGRADE => 'websocket',
        HTTP_CONNECTION => 'Upgrade', HTTP_SEC_WEBSOCKET_VERSION => 13,
        HTTP_SEC_WEBSOCKET_KEY => $KEY, 'psgix.io' => $io, 'psgi.errors' => \*STDERR,
        'psgi.streaming' => 1,
    };
}

sub pair {
    socketpair(my $client, my $server, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
    $_->autoflush(1) for $client, $server;
    return ($client, $server);
}

# Forks a child that runs $code->($report) (with $report->($line) writing to
# the parent), then _exits. Returns { pid, from } with `from` the pipe.
sub child {
    my ($code) = @_;
    pipe(my $from, my $to) or die "pipe: $!";
    my $pid = fork;
    defined $pid or die "fork: $!";
    if (!$pid) {
        close $from;
        $SIG{ALRM} = 'DEFAULT';
        alarm 30;    # never outlive the test
        my $report = sub { my $l = "$_[0]\n"; syswrite $to, $l; return };
        my $ok = eval { $code->($report); 1 };
        $report->('child died: ' . ($@ =~ s/\n/ /gr)) unless $ok;
        POSIX::_exit($ok ? 0 : 1);
    }
    close $to;
    return { pid => $pid, from => $from, buf => '' };
}

# The child's next report line, waiting at most $timeout s (undef: none).
sub next_report {
    my ($k, $timeout) = @_;
    my $deadline = Time::HiRes::time() + $timeout;
    while ($k->{buf} !~ /\n/) {
        my $left = $deadline - Time::HiRes::time();
        return undef if $left <= 0;
        next unless IO::Select->new($k->{from})->can_read($left);
        my $n = sysread $k->{from}, $k->{buf}, 4096, length $k->{buf};
        next if !defined $n && $! == EINTR;
        return undef unless $n;
    }
    $k->{buf} =~ s/^(.*)\n//;
    return $1;
}

sub reap {
    my ($k) = @_;
    my $deadline = Time::HiRes::time() + 10;
    while (Time::HiRes::time() < $deadline) {
        return $? if waitpid($k->{pid}, POSIX::WNOHANG()) == $k->{pid};
        Time::HiRes::sleep(0.02);
    }
    kill 'KILL', $k->{pid};
    waitpid($k->{pid}, 0);
    return 'killed';
}

# Reads from $s until $n bytes came, the stream ended, or $timeout s.
sub read_bytes {
    my ($s, $n, $timeout) = @_;
    my $deadline = Time::HiRes::time() + $timeout;
    my $buf = '';
    my $sel = IO::Select->new($s);
    while (length $buf < $n) {
        my $left = $deadline - Time::HiRes::time();
        last if $left <= 0;
        next unless $sel->can_read($left);
        my $got = sysread $s, $buf, $n - length $buf, length $buf;
        next if !defined $got && ($! == EINTR || $! == EAGAIN);
        last unless $got;
    }
    return $buf;
}

# True when $s reaches end of stream within $timeout s with nothing more to read.
sub at_eof {
    my ($s, $timeout) = @_;
    my $more = read_bytes($s, 1, $timeout);
    return length $more ? 0 : 1;
}

sub read_head {
    my ($s) = @_;
    my $head = '';
    while ($head !~ /\r\n\r\n\z/) {
        my $b = read_bytes($s, 1, 5);
        return $head unless length $b;
        $head .= $b;
    }
    return $head;
}

my %SOURCE = (
    area => {
        send => sub { uwsgi::websocket_send_binary_from_sharedarea(0, 0, $FRAME) },
        bytes => $AREA_BYTES,
    },
    buffer => {
        send => sub { uwsgi::websocket_send_binary($BUF_BYTES) },
        bytes => $BUF_BYTES,
    },
);

# 1. A handler that sets a flag runs at once during a stalled send; the send
#    then goes on and the frame arrives complete.
for my $from (qw(area buffer)) {
    my ($c, $s) = pair();
    my $k = child(sub {
        my ($report) = @_;
        close $c;
        local $SharedArea::WebSocket::ENV = request_env($s);
        uwsgi::websocket_handshake();
        my $flag = 0;
        $SIG{ALRM} = sub { $flag++; $report->(sprintf 'handler %.6f', Time::HiRes::time()) };
        $report->(sprintf 'armed %.6f', Time::HiRes::time() + 0.5);
        Time::HiRes::alarm(0.5);
        my $n = $SOURCE{$from}{send}->();
        $report->("done $n flag $flag");
    });
    close $s;
    my $armed = next_report($k, 5);
    my $handler = next_report($k, 5);
    my ($at) = ($armed // '') =~ /^armed (\S+)/;
    my ($ran) = ($handler // '') =~ /^handler (\S+)/;
    ok(defined $ran, "$from: the \$SIG{ALRM} handler ran while the send was stalled")
        or diag("child said: " . ($armed // 'nothing') . ' / ' . ($handler // 'nothing'));
    my $late = defined $ran && defined $at ? $ran - $at : 99;
    cmp_ok($late, '<', 1, "$from: ... promptly (" . sprintf('%.3f', $late) . ' s after the signal)');
    ok(!IO::Select->new($k->{from})->can_read(0.3), "$from: ... and the send goes on after it");
    my $head = read_head($c);
    like($head, qr{^HTTP/1\.1 101 }, "$from: the 101");
    my $want = header(2, $FRAME) . $SOURCE{$from}{bytes};
    my $got = read_bytes($c, length $want, 20);
    is(length $got, length $want, "$from: the whole frame arrived once the client read");
    ok($got eq $want, "$from: ... with exactly the bytes sent");
    is(next_report($k, 10), "done $FRAME flag 1", "$from: the send returned the payload length, the handler ran once");
    is(reap($k), 0, "$from: the child ended cleanly");
    ok(at_eof($c, 5), "$from: nothing after the frame");
}

# 2. A handler that dies aborts the send; the next send first finishes the
#    interrupted frame, so the client gets both frames whole, in order.
{
    my ($c, $s) = pair();
    my $k = child(sub {
        my ($report) = @_;
        close $c;
        local $SharedArea::WebSocket::ENV = request_env($s);
        uwsgi::websocket_handshake();
        local $SIG{ALRM} = sub { die "alarm fired\n" };
        Time::HiRes::alarm(0.5);
        my $ok = eval { uwsgi::websocket_send_binary_from_sharedarea(0, 0, $FRAME); 1 };
        my $err = $@;
        $report->($ok ? 'not aborted' : 'aborted: ' . ($err =~ s/\n/ /gr));
        $report->('pending ' . SharedArea::_ws_flush('probe', 99999));    # another fd: nothing
        my $n = uwsgi::websocket_send('after');
        $report->("done $n");
    });
    close $s;
    is(next_report($k, 5), 'aborted: alarm fired ', 'a dying handler aborts the send with its own error');
    is(next_report($k, 5), 'pending 0', '_ws_flush of an fd with nothing pending returns 0');
    like(read_head($c), qr{^HTTP/1\.1 101 }, 'the 101');
    my $want = header(2, $FRAME) . $AREA_BYTES . header(1, 5) . 'after';
    my $got = read_bytes($c, length $want, 20);
    is(length $got, length $want, 'the aborted frame and the next one arrived');
    ok(substr($got, 0, $FRAME + 10) eq substr($want, 0, $FRAME + 10), '... the aborted frame whole');
    is(substr($got, $FRAME + 10), "\x81\x05after", '... then the next frame');
    is(next_report($k, 10), 'done 5', 'the next send returned its own payload length');
    is(reap($k), 0, 'the child ended cleanly');
    ok(at_eof($c, 5), 'nothing more');
}

# 2b. Likewise a pong: websocket_recv answers a ping only after the rest of
#     the interrupted frame has gone out.
{
    my ($c, $s) = pair();
    my $k = child(sub {
        my ($report) = @_;
        close $c;
        local $SharedArea::WebSocket::ENV = request_env($s);
        uwsgi::websocket_handshake();
        {
            local $SIG{ALRM} = sub { die "alarm fired\n" };
            Time::HiRes::alarm(0.5);
            eval { uwsgi::websocket_send_binary_from_sharedarea(0, 0, $FRAME); 1 } and die "not aborted\n";
        }
        $report->('aborted');
        $report->('got ' . uwsgi::websocket_recv());
    });
    close $s;
    is(next_report($k, 5), 'aborted', 'a dying handler aborted a send');
    syswrite $c, client_frame(0x9, 'p1') . client_frame(0x1, 'bye');
    like(read_head($c), qr{^HTTP/1\.1 101 }, 'the 101');
    my $want = header(2, $FRAME) . $AREA_BYTES . header(0xA, 2) . 'p1';
    my $got = read_bytes($c, length $want, 20);
    is(length $got, length $want, 'the aborted frame and the pong arrived');
    ok(substr($got, 0, $FRAME + 10) eq substr($want, 0, $FRAME + 10), '... the aborted frame whole');
    is(substr($got, $FRAME + 10), "\x8a\x02p1", '... then the pong');
    is(next_report($k, 10), 'got bye', 'websocket_recv returned the next message');
    is(reap($k), 0, 'the child ended cleanly');
}

# 3. The handshake forgets what an earlier connection with the same fd number
#    left: a new client never gets stale bytes.
{
    my ($c1, $s1) = pair();
    my ($c2, $s2) = pair();
    my $k = child(sub {
        my ($report) = @_;
        close $_ for $c1, $c2;
        {
            local $SharedArea::WebSocket::ENV = request_env($s1);
            uwsgi::websocket_handshake();
            local $SIG{ALRM} = sub { die "alarm fired\n" };
            Time::HiRes::alarm(0.5);
            eval { uwsgi::websocket_send_binary_from_sharedarea(0, 0, $FRAME); 1 } and die "not aborted\n";
        }
        # the server's next connection gets the same descriptor number
        POSIX::dup2(fileno $s2, fileno $s1) or die "dup2: $!";
        close $s2;
        local $SharedArea::WebSocket::ENV = request_env($s1);
        uwsgi::websocket_handshake();
        $report->('sent ' . uwsgi::websocket_send('fresh'));
    });
    close $_ for $s1, $s2;
    is(next_report($k, 5), 'sent 5', 'a send on a new connection with the old fd number');
    like(read_head($c2), qr{^HTTP/1\.1 101 }, 'the new client gets its 101');
    my $got = read_bytes($c2, 7, 5);
    is($got, "\x81\x05fresh", '... then its own frame, no stale bytes');
    is(reap($k), 0, 'the child ended cleanly');
    ok(at_eof($c2, 5), '... and nothing more');
    like(read_head($c1), qr{^HTTP/1\.1 101 }, 'the old client had its 101');
    my $old = read_bytes($c1, $FRAME + 10, 5);
    cmp_ok(length $old, '<', $FRAME + 10, '... and part of the aborted frame, never the rest');
}

# 4. The end of a session (the middleware) drops the rest of an aborted frame
#    and sends no close frame after the partial one.
{
    my ($c, $s) = pair();
    my $fd = fileno $s;
    my $k = child(sub {
        my ($report) = @_;
        close $c;
        my $app = Plack::Middleware::SharedArea->wrap(sub {
            uwsgi::websocket_handshake();
            local $SIG{ALRM} = sub { die "alarm fired\n" };
            Time::HiRes::alarm(0.5);
            eval { uwsgi::websocket_send_binary_from_sharedarea(0, 0, $FRAME); 1 } and die "not aborted\n";
            return [ 200, [], [] ];
        });
        my $t0 = Time::HiRes::time();
        $app->(request_env($s));
        $report->(sprintf 'ended %.3f left %d', Time::HiRes::time() - $t0, SharedArea::_ws_forget($fd));
    });
    close $s;
    my $r = next_report($k, 10) // '';
    my ($took, $left) = $r =~ /^ended (\S+) left (\d+)$/;
    ok(defined $took, "the app and the end of its session returned ($r)");
    cmp_ok($took // 99, '<', 1.5, '... without lingering');
    is($left, 0, '... and nothing is pending for the fd any more');
    like(read_head($c), qr{^HTTP/1\.1 101 }, 'the 101');
    my $got = read_bytes($c, $FRAME + 100, 5);
    cmp_ok(length $got, '<', $FRAME + 10, 'part of the aborted frame arrived');
    my $want = header(2, $FRAME) . $AREA_BYTES;
    ok(length $got > 10 && $got eq substr($want, 0, length $got),
        '... and nothing but that part (no close frame inside it)');
    is(reap($k), 0, 'the child ended cleanly');
}

ok(!eval { SharedArea::_ws_forget(-1); 1 }, '_ws_forget(-1) dies');
like($@, qr/^SharedArea::_ws_forget: file descriptor -1 /, '... naming the function');
is(SharedArea::_ws_forget(12345), 0, '_ws_forget of an fd with nothing pending returns 0');

# ---------------------------------------------------------------------------
# A real Starman worker stuck sending to a stalled client exits on TERM

my $dir = tmpdir();
my $app = write_file("$dir/signals.psgi", <<'PSGI');
use strict;
use warnings;
use SharedArea $ENV{SIGTEST_SPEC};
use Plack::Builder;
my $FRAME   = 4 * 1024 * 1024;
my $COUNTER = 8 * 1024 * 1024 - 8;
my $big     = 'b' x $FRAME;
builder {
    enable 'SharedArea';
    sub {
        my ($env) = @_;
        return [ 200, [ 'Content-Type' => 'text/plain' ], ["ok $$"] ] if $env->{PATH_INFO} eq '/http';
        uwsgi::websocket_handshake();
        uwsgi::websocket_send("pid $$");
        while (1) {
            if ($env->{PATH_INFO} eq '/area') {
                uwsgi::websocket_send_binary_from_sharedarea(0, 0, $FRAME);
            } else {
                uwsgi::websocket_send_binary($big);
            }
            uwsgi::sharedarea_inc64(0, $COUNTER);
        }
    };
};
PSGI

my $srv = start_starman(app => $app, workers => 1, preload => 1, dir => $dir,
    env => { SIGTEST_SPEC => $SPEC }, unset_env => ['UWSGI_SHAREDAREA'], ready_path => '/http', timeout => 30);

for my $route ('/area', '/buffer') {
    my $c = ws_connect($srv->{port}, $route, rcvbuf => 4096);
    is($c->{status}, 101, "starman $route: the handshake");
    my $f = ws_next_frame($c, 10);
    my ($pid) = ($f && $f->{payload} || '') =~ /^pid (\d+)$/;
    ok($pid, "starman $route: the worker says its pid") or last;
    # the client reads nothing more: wait until the worker is stuck in a send
    my ($last, $since, $deadline) = (-1, Time::HiRes::time(), Time::HiRes::time() + 20);
    while (Time::HiRes::time() < $deadline) {
        my $now = uwsgi::sharedarea_read64(0, $COUNTER);
        ($last, $since) = ($now, Time::HiRes::time()) if $now != $last;
        last if Time::HiRes::time() - $since > 0.7;
        Time::HiRes::sleep(0.05);
    }
    ok(Time::HiRes::time() - $since > 0.7, "starman $route: the worker is stuck sending to the stalled client");
    my $t0 = Time::HiRes::time();
    kill 'TERM', $pid;
    Time::HiRes::sleep(0.01) while kill(0, $pid) && Time::HiRes::time() - $t0 < 10;
    my $took = Time::HiRes::time() - $t0;
    diag(sprintf 'starman %s: the stuck worker exited %.3f s after TERM', $route, $took);
    cmp_ok($took, '<', 2, "starman $route: the stuck worker exits on TERM at once");
    close $c->{sock};
    my ($st, $body);
    my $end = Time::HiRes::time() + 15;
    while (Time::HiRes::time() < $end) {
        ($st, $body) = eval { http_get($srv->{port}, '/http', timeout => 2) };
        last if defined $st;
        Time::HiRes::sleep(0.1);
    }
    is($st, 200, "starman $route: a new worker serves");
    isnt($body, "ok $pid", "starman $route: ... not the one that got TERM");
}

stop_server($srv);
done_testing();
