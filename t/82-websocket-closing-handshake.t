#!/usr/bin/perl
# Event-loop sessions (SharedArea::WebSocket->accept) end with the closing
# handshake of RFC 6455 (7.1.1, 5.5.1), under Twiggy and Feersum, with real
# sockets: a client that sends a close frame gets it echoed (its code) and
# then the TCP FIN; a close by the server waits for the client's close frame
# (discarding its messages meanwhile) and then closes; a client that never
# answers is dropped after the linger; a client that resets the connection,
# callbacks that die and an app that dies after accept end their sessions
# too; Mojo::UserAgent closes both ways; and at the end nothing is still
# closing and the server holds as many descriptors as before.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);
use SharedAreaTest::Proc qw(require_blib tmpdir http_get stop_server have_module find_program run_perl guard_test);
use SharedAreaTest::WebSocket qw(start_ws_server ws_connect ws_next_frame client_frame fd_count fd_baseline);

require_blib();
guard_test(400);
$SIG{PIPE} = 'IGNORE';    # a write to a server that closed too early fails, not kills
my $dir = tmpdir();
my $app = "$FindBin::Bin/lib/SharedAreaTest/ws-evented.psgi";

# Writes client frames; false when the server has closed the connection.
sub ws_send {
    my ($c, @frames) = @_;
    return eval { SharedAreaTest::WebSocket::ws_send($c, @frames); 1 };
}

sub close_code {
    my ($f) = @_;
    return 'no frame' unless $f;
    return "opcode $f->{op}" unless $f->{op} == 8;
    return length $f->{payload} >= 2 ? unpack('n', $f->{payload}) : 'none';
}

# A session on $path, after its first message ("pid N").
sub session {
    my ($port, $path, %opt) = @_;
    my $c = ws_connect($port, $path, %opt);
    my $f = $c->{status} == 101 ? ws_next_frame($c, 10) : undef;
    $c->{pid} = $f && $f->{payload} =~ /^pid (\d+)$/ ? $1 : undef;
    return $c;
}

# Reads until the server ends the stream, it fails (a reset), or $secs pass:
# { eof => 1 } or { error => $! } or neither, with the bytes that came first.
sub wait_end {
    my ($c, $secs) = @_;
    my $deadline = time + $secs;
    my $sel = IO::Select->new($c->{sock});
    my %r = (bytes => $c->{buf});
    $c->{buf} = '';
    while ((my $left = $deadline - time) > 0) {
        next unless $sel->can_read($left);
        my $n = sysread($c->{sock}, my $buf, 65536);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            $r{error} = "$!";
            last;
        }
        if (!$n) {
            $r{eof} = 1;
            last;
        }
        $r{bytes} .= $buf;
    }
    return \%r;
}

sub show { my ($r) = @_; return $r->{eof} ? 'end of stream' : $r->{error} ? "error: $r->{error}" : 'still open' }

# Bounded: waits until $cond is true or $secs pass; returns the last value.
sub within {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    my $v;
    until (($v = $cond->()) || time > $deadline) { sleep 0.05 }
    return $v;
}

my $MOJO = <<'PERL';
use strict; use warnings;
use Time::HiRes qw(time);
use Mojo::UserAgent; use Mojo::IOLoop;
my ($port, $who) = @ARGV;
my $ua = Mojo::UserAgent->new(inactivity_timeout => 60);
my (@out, $t0);
$ua->websocket("ws://127.0.0.1:$port/l30/echo" => sub {
    my ($ua, $tx) = @_;
    unless ($tx->is_websocket) { push @out, 'handshake failed'; Mojo::IOLoop->stop; return }
    $tx->on(frame => sub {
        my ($tx, $f) = @_;
        push @out, 'close frame ' . (length $f->[5] >= 2 ? unpack('n', $f->[5]) : 'none') if $f->[4] == 8;
    });
    $tx->on(message => sub {
        my ($tx, $m) = @_;
        return unless $m =~ /^pid/;
        $t0 = time;
        if ($who eq 'client') { $tx->finish(4004) } else { $tx->send('close 4005') }
    });
    $tx->on(finish => sub {
        my ($tx, $code) = @_;
        push @out, sprintf 'finish %s after %.2f s', $code // 'none', time - ($t0 // time);
        Mojo::IOLoop->stop;
    });
});
Mojo::IOLoop->timer(25 => sub { push @out, 'timeout'; Mojo::IOLoop->stop });
Mojo::IOLoop->start;
print "$_\n" for @out;
PERL

for my $kind (qw(twiggy feersum)) {
  SKIP: {
    my $module = $kind eq 'twiggy' ? 'Twiggy' : 'Feersum';
    skip "$module is not installed", 1 unless have_module($module);
    skip 'AnyEvent is not installed', 1 unless have_module('AnyEvent');
    skip 'plackup is not installed', 1 unless find_program('plackup') && have_module('Plack');
    my $srv = start_ws_server($kind, app => $app, spec => '', dir => $dir);
    my $port = $srv->{port};
    my (undef, $body) = http_get($port, '/http');
    my ($pid) = ($body // '') =~ /^ok (\d+)$/;
    ok($pid, "$kind: the server answers (pid " . ($pid // '?') . ')') or next;
    my $fds = fd_baseline($pid);

    # the client closes: its code echoed, then the FIN
    {
        my $c = session($port, '/l30/echo');
        is($c->{pid}, $pid, "$kind: an event-loop session");
        ws_send($c, client_frame(1, 'hi'));
        is((ws_next_frame($c, 10) || {})->{payload}, 'hi', "$kind: ... echoes");
        ws_send($c, client_frame(8, pack('n', 4000) . 'bye'));
        is(close_code(ws_next_frame($c, 10)), 4000, "$kind: the client's close frame is answered with its code");
        my $end = wait_end($c, 10);
        ok($end->{eof}, "$kind: ... then the server ends the stream (a FIN, not a reset), not waiting out its linger (30 s): "
            . show($end));
        is($end->{bytes}, '', "$kind: ... nothing after the close frame");
    }

    # the client closes while much is queued for it: the queue goes out
    # first, whole, then the echo, then the FIN
    {
        my $c = session($port, '/l30/echo', rcvbuf => 16384);
        my $big = 12 << 20;    # more than the kernel's buffers hold
        ws_send($c, client_frame(1, "big $big"));
        sleep 0.3;    # not reading: most of it waits in the server's queue
        ws_send($c, client_frame(8, pack('n', 4006)));
        my $f = ws_next_frame($c, 20);
        ok($f && $f->{op} == 2 && $f->{len} == $big && $f->{payload} eq 'b' x $big,
            "$kind: what was queued when the client closed goes out whole first");
        is(close_code(ws_next_frame($c, 10)), 4006, "$kind: ... then the echo of the client's close");
        my $end = wait_end($c, 10);
        ok($end->{eof}, "$kind: ... then the end of the stream: " . show($end));
        is($end->{bytes}, '', "$kind: ... nothing after the close frame");
    }

    # the server closes: it waits for the client's close frame, then closes
    {
        my $c = session($port, '/l30/echo');
        ws_send($c, client_frame(1, 'close 4001'));
        is(close_code(ws_next_frame($c, 10)), 4001, "$kind: the server's close frame (4001)");
        my $r = wait_end($c, 0.5);
        ok(!$r->{eof} && !$r->{error}, "$kind: ... then the connection stays open for the client's close frame: "
            . show($r));
        # messages after the server's close are read and discarded
        ws_send($c, client_frame(1, 'after the close'), client_frame(2, 'x' x 70000, fin => 0),
            client_frame(0, 'y' x 10), client_frame(9, 'ping'));
        ws_send($c, client_frame(8, pack('n', 4001)));
        my $end = wait_end($c, 10);
        ok($end->{eof}, "$kind: ... the client's close frame ends it: the server closes (not after its linger): "
            . show($end));
        is($end->{bytes}, $r->{bytes}, "$kind: ... nothing after the close frame (the client's messages were discarded)");
        is($r->{bytes}, '', "$kind: ... nothing while it waited");
    }

    # a client that never answers the close: dropped after the linger (1 s)
    {
        my $c = session($port, '/echo');
        my $t0 = time;
        ws_send($c, client_frame(1, 'close 4002'));
        is(close_code(ws_next_frame($c, 10)), 4002, "$kind: the server's close frame to a client that will not answer");
        my $end = wait_end($c, 30);
        my $took = time - $t0;
        ok($end->{eof} || $end->{error}, sprintf('%s: ... the client is dropped (%.2f s): %s', $kind, $took, show($end)));
        cmp_ok($took, '>=', 0.9, "$kind: ... after the linger (1 s)");
    }

    # callbacks that die: the session goes on, and still ends
    {
        my $c = session($port, '/l30/echo');
        ws_send($c, client_frame(1, 'die'), client_frame(1, 'still here'));
        is((ws_next_frame($c, 10) || {})->{payload}, 'still here', "$kind: an on_message that dies leaves the session open");
        ws_send($c, client_frame(8, pack('n', 1000)));
        is(close_code(ws_next_frame($c, 10)), 1000, "$kind: ... its close is answered (the on_end dies)");
        my $end = wait_end($c, 10);
        ok($end->{eof}, "$kind: ... and the connection closed: " . show($end));
    }

    # the app dies after accept: 1011, then the closing handshake (and the
    # server's own response is not written into the closing connection)
    {
        my $c = session($port, '/l30/app-dies');
        is($c->{pid}, $pid, "$kind: an app that dies after accept");
        is(close_code(ws_next_frame($c, 10)), 1011, "$kind: ... the session is closed with 1011");
        my $r = wait_end($c, 0.3);
        ok(!$r->{eof} && !$r->{error}, "$kind: ... waiting for the client's close frame: " . show($r));
        ws_send($c, client_frame(8, pack('n', 1011)));
        my $end = wait_end($c, 10);
        ok($end->{eof}, "$kind: ... which ends it: " . show($end));
        is($r->{bytes} . $end->{bytes}, '', "$kind: ... nothing after the close frame (no HTTP response)");
    }

    # a client that resets the connection while the server waits for its close
    {
        my $c = session($port, '/l30/echo');
        ws_send($c, client_frame(1, 'close 4003'));
        is(close_code(ws_next_frame($c, 10)), 4003, "$kind: the server's close frame to a client that resets");
        setsockopt($c->{sock}, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) or die "SO_LINGER: $!";
        close $c->{sock};    # a reset
        my $n = within(15, sub { my (undef, $b) = eval { http_get($port, '/lingering') }; defined $b && $b eq '0' });
        ok($n, "$kind: ... the reset ends the closing at once (not after its linger, 30 s)");
    }

  SKIP: {
        skip 'Mojolicious is not installed', 4 unless have_module('Mojo::UserAgent');
        # (Mojo::UserAgent ends its side as soon as its own close frame is out)
        my (undef, $out, $err) = run_perl(40, $MOJO, $port, 'client');
        like($out, qr/^finish 4004 after/m, "$kind: a Mojo::UserAgent client closes (4004)")
            or diag("out: $out\nerr: $err");
        (undef, $out, $err) = run_perl(40, $MOJO, $port, 'server');
        like($out, qr/^close frame 4005$/m, "$kind: the server closes a Mojo::UserAgent session (4005)")
            or diag("out: $out\nerr: $err");
        like($out, qr/^finish 4005 after/m, "$kind Mojo::UserAgent: ... it answers and the connection ends")
            or diag("out: $out\nerr: $err");
        my $n = within(15, sub { my (undef, $b) = eval { http_get($port, '/lingering') }; defined $b && $b eq '0' });
        ok($n, "$kind: ... both Mojo::UserAgent sessions were closed at once (not after the linger, 30 s)");
    }

    # nothing is left closing; the server holds as many descriptors as before
    my $left = within(15, sub { my (undef, $b) = eval { http_get($port, '/lingering') }; defined $b && $b eq '0' });
    ok($left, "$kind: no connection is still closing");
    my $now = within(10, sub { my $n = fd_count($pid); $n <= $fds ? $n : 0 }) || fd_count($pid);
    is($now, $fds, "$kind: the server holds as many descriptors as before the sessions");
    if ($kind eq 'twiggy') {
        # Twiggy waits for every connection's response on a graceful stop:
        # each was given once its connection was closed
        kill 'QUIT', $srv->{pid};
        ok(defined SharedAreaTest::Proc::wait_child($srv->{pid}, 30), "$kind: a graceful stop (SIGQUIT) completes");
    }
    stop_server($srv);
    my $log = SharedAreaTest::Proc::slurp($srv->{log}) // '';
    $log =~ s/^close at destruction: Bad file descriptor\n//mg if $kind eq 'feersum';    # see SharedAreaTest::WebSocket
    like($log, qr/on_message died on purpose/, "$kind: the dying on_message was reported");
    like($log, qr/on_end died on purpose/, "$kind: the dying on_end was reported");
    like($log, qr/the app died during a WebSocket session: the app died on purpose/, "$kind: the dying app was reported");
    unlike($log, qr/Bad file descriptor|uncaught|panicked|Segmentation|SIGPIPE/i, "$kind: nothing alarming in the log")
        or diag $log;
  }
}

done_testing();
