#!/usr/bin/perl
# Every WebSocket session ends: a silent client and one that trickles bytes
# are pinged and dropped within the keep-alive policy's time; a send or pong
# that fails part-way breaks the connection for good (no further frame, no
# close frame inside the cut one, every later call fails at once with the
# CONNECTION_FAILED status, the socket is shut); a ping flood cannot keep a
# recv_nb loop going; invalid UTF-8 in a text message or close reason gets
# close 1007 and the app is told why.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Handle;
use POSIX ();
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC MSG_DONTWAIT MSG_NOSIGNAL SOL_SOCKET SO_SNDBUF SO_RCVBUF);
use Time::HiRes qw(time sleep);
use SharedAreaTest::Area qw(err_of);
use SharedAreaTest::Proc qw(require_blib);
use SharedAreaTest::WebSocket qw(client_frame parse_frames);

require_blib();
require SharedArea;
eval { require Plack::Middleware; 1 } or plan skip_all => 'Plack is not installed';
require Plack::Middleware::SharedArea;
$SIG{ALRM} = sub { die "test exceeded its time limit\n" };
alarm 120;

my %ST = SharedArea::_ws_statuses();
my $KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

sub pair {
    socketpair(my $client, my $server, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
    $_->autoflush(1) for $client, $server;
    return ($client, $server);
}

sub request_env {
    my ($io) = @_;
    my $errors = '';
    open my $eh, '>', \$errors or die;
    return ({
        REQUEST_METHOD => 'GET', SERVER_PROTOCOL => 'HTTP/1.1', HTTP_UPGRADE => 'websocket',
        HTTP_CONNECTION => 'Upgrade', HTTP_SEC_WEBSOCKET_VERSION => 13, PATH_INFO => '/',
        HTTP_SEC_WEBSOCKET_KEY => $KEY, 'psgix.io' => $io, 'psgi.errors' => $eh, 'psgi.streaming' => 1,
    }, \$errors);
}

# Everything the client end can read within $secs, until end of stream.
sub read_all {
    my ($s, $secs) = @_;
    my $all = '';
    my $deadline = time + $secs;
    while (time < $deadline) {
        my $rin = '';
        vec($rin, fileno $s, 1) = 1;
        next unless select($rin, undef, undef, 0.05);
        my $n = sysread($s, my $buf, 1 << 20);
        last unless $n;
        $all .= $buf;
    }
    return $all;
}

sub frames_after_101 {
    my ($bytes) = @_;
    my (undef, $body) = split /\r\n\r\n/, $bytes, 2;
    return parse_frames(defined $body ? $body : '');
}

# Runs $app (wrapped with %opt) on a fresh socketpair; returns what it recorded,
# the seconds it took, and the client's socket.
sub run_app {
    my ($code, %opt) = @_;
    my ($c, $s) = pair();
    my ($env) = request_env($s);
    my %got;
    my $app = Plack::Middleware::SharedArea->wrap(sub {
        uwsgi::websocket_handshake();
        $code->(\%got);
        return [ 200, [], [] ];
    }, linger => 0, %opt);
    my $t0 = time;
    $app->($env);
    return (\%got, time - $t0, $c);
}

# True when our side of the session's socket was shut down for writing.
sub shut_down {
    no warnings 'once';
    my $io = $SharedArea::WebSocket::ENV->{'psgix.io'};
    return !defined send($io, 'x', MSG_DONTWAIT | MSG_NOSIGNAL) && $!{EPIPE} ? 1 : 0;
}


# --- a silent client is pinged, then dropped ------------------------------------
{
    my ($got, $took, $c) = run_app(sub {
        my ($got) = @_;
        $got->{err} = err_of(sub { uwsgi::websocket_recv() });
        $got->{status} = $SharedArea::WebSocket::STATUS;
        $got->{again} = err_of(sub { uwsgi::websocket_send('late') });
        $got->{again_status} = $SharedArea::WebSocket::STATUS;
        $got->{recv_again} = err_of(sub { uwsgi::websocket_recv_nb() });
        $got->{shut} = shut_down();
    }, ping_interval => 0.3, pong_timeout => 0.4);
    like($got->{err}, qr/^websocket_recv: the connection failed \(the client answered no ping within 0\.4 s\) at /,
        'a silent client: websocket_recv dies saying the connection failed');
    is($got->{status}, $ST{CONNECTION_FAILED}, '... with the CONNECTION_FAILED status');
    cmp_ok($took, '>=', 0.65, '... after the ping interval and the pong timeout');
    cmp_ok($took, '<', 4, '... not much later');
    like($got->{again}, qr/^websocket_send: the connection failed/, 'a later send fails at once');
    is($got->{again_status}, $ST{CONNECTION_FAILED}, '... with the same status');
    like($got->{recv_again}, qr/^websocket_recv_nb: the connection failed/, 'and so does a later receive');
    ok($got->{shut}, 'the socket was shut down');
    my ($frames, $rest) = frames_after_101(read_all($c, 1));
    is_deeply([ map { $_->{op} } @$frames ], [9], 'the client got one ping, and no close frame after it');
    is($rest, '', '... and then the end of the stream');
}

# --- a client that answers pings stays ------------------------------------------
{
    my ($c, $s) = pair();
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $s;
        my $buf = '';
        my $t0 = time;
        my $pongs = 0;
        while (time - $t0 < 1.5) {    # answer every ping for 1.5 s, then send a message
            my $rin = '';
            vec($rin, fileno $c, 1) = 1;
            next unless select($rin, undef, undef, 0.05);
            sysread($c, $buf, 65536, length $buf) or POSIX::_exit(1);
            $buf =~ s/^.*?\r\n\r\n//s;
            my ($frames, $rest) = parse_frames($buf);
            $buf = $rest;
            for (grep { $_->{op} == 9 } @$frames) { syswrite $c, client_frame(10, $_->{payload}); $pongs++ }
        }
        syswrite $c, client_frame(1, "still here after $pongs pongs");
        sleep 0.5;
        POSIX::_exit(0);
    }
    close $c;
    my ($env) = request_env($s);
    my $msg;
    Plack::Middleware::SharedArea->wrap(sub {
        uwsgi::websocket_handshake();
        $msg = uwsgi::websocket_recv();
        return [ 200, [], [] ];
    }, linger => 0, ping_interval => 0.2, pong_timeout => 0.3)->($env);
    waitpid $pid, 0;
    like($msg, qr/^still here after (\d+) pongs$/, 'a client that answers pings keeps its session');
    my ($n) = ($msg // '') =~ /(\d+)/;
    cmp_ok($n // 0, '>=', 3, '... and was pinged while silent');
}

# --- a client that trickles one byte at a time ----------------------------------
{
    my ($c, $s) = pair();
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $s;
        my $frame = client_frame(1, 'x' x 100);
        for my $i (0 .. length($frame) - 1) {
            syswrite($c, substr($frame, $i, 1)) or POSIX::_exit(0);
            sleep 0.1;
        }
        POSIX::_exit(0);
    }
    close $c;
    my ($env) = request_env($s);
    my ($err, $t0) = ('', time);
    Plack::Middleware::SharedArea->wrap(sub {
        uwsgi::websocket_handshake();
        $err = err_of(sub { uwsgi::websocket_recv() });
        return [ 200, [], [] ];
    }, linger => 0, ping_interval => 0.3, pong_timeout => 0.3)->($env);
    my $took = time - $t0;
    kill 'KILL', $pid;
    waitpid $pid, 0;
    like($err, qr/^websocket_recv: the connection failed \(the client answered no ping/,
        'a client trickling bytes of a frame is dropped');
    cmp_ok($took, '<', 4, "... within the policy's time ($took s; the trickle would last 10 s)");
}

# --- a send cut off part-way ------------------------------------------------------
{
    my $area = SharedArea::init('size=4M');
    uwsgi::sharedarea_write($area, 0, 'A' x (4 << 20));
    my ($got, $took, $c) = run_app(sub {
        my ($got) = @_;
        $got->{err} = err_of(sub { uwsgi::websocket_send_binary_from_sharedarea($area, 0) });
        $got->{status} = $SharedArea::WebSocket::STATUS;
        my $t = time;
        $got->{again} = err_of(sub { uwsgi::websocket_send('next') });
        $got->{recv} = err_of(sub { uwsgi::websocket_recv() });
        $got->{took} = time - $t;
        $got->{shut} = shut_down();
    }, send_timeout => 0.3);
    SharedArea::_ws_set_stall_limit('t', 60);
    like($got->{err}, qr/^websocket_send_binary_from_sharedarea: fd \d+: the connection failed part-way through a frame \(the client accepted nothing for 0\.3 s\)/,
        'a send the client stops taking part-way fails');
    is($got->{status}, $ST{CONNECTION_FAILED}, '... with CONNECTION_FAILED');
    like($got->{again}, qr/^websocket_send: the connection failed/, 'the next send fails at once');
    like($got->{recv}, qr/^websocket_recv: the connection failed/, '... and so does a receive');
    cmp_ok($got->{took}, '<', 1, '... without waiting (the stall limit is not waited again)');
    ok($got->{shut}, 'the socket was shut down');
    my $bytes = read_all($c, 2);
    my (undef, $body) = split /\r\n\r\n/, $bytes, 2;
    my $frame_start = "\x82\x7f" . pack('NN', 0, 4 << 20);
    ok(length $body > 10 && length $body < 10 + (4 << 20), 'the client got part of the frame (' . length($body) . ' bytes)');
    is($body, substr($frame_start . ('A' x (4 << 20)), 0, length $body),
        '... and nothing else: no later frame, no close frame inside it; then the end of the stream');
}

# --- a pong that cannot be written ------------------------------------------------
{
    no warnings 'once';
    local $SharedArea::WebSocket::CONTROL_TIMEOUT = 0.3;
    my ($c, $s) = pair();
    setsockopt($_, SOL_SOCKET, SO_SNDBUF, 4096) for $c, $s;
    setsockopt($c, SOL_SOCKET, SO_RCVBUF, 4096);
    my $pid = fork // die "fork: $!";
    if (!$pid) {    # pings, and never reads the pongs
        close $s;
        my $ping = client_frame(9, 'p' x 125);
        my $t0 = time;
        while (time - $t0 < 5) { defined syswrite($c, $ping) or last }
        POSIX::_exit(0);
    }
    my ($env) = request_env($s);
    my ($err, $status, $again, $shut, $t0) = ('', 0, '', 0, time);
    Plack::Middleware::SharedArea->wrap(sub {
        uwsgi::websocket_handshake();
        $err = err_of(sub { uwsgi::websocket_recv() });
        $status = $SharedArea::WebSocket::STATUS;
        $again = err_of(sub { uwsgi::websocket_recv_nb() });
        $shut = shut_down();
        return [ 200, [], [] ];
    }, linger => 0)->($env);
    my $took = time - $t0;
    kill 'KILL', $pid;
    waitpid $pid, 0;
    like($err, qr/^websocket_recv: the connection failed \(writing a pong: /, 'a pong that cannot be written ends the receive');
    is($status, $ST{CONNECTION_FAILED}, '... with CONNECTION_FAILED');
    cmp_ok($took, '<', 3, '... at once, not after millions of discarded pings');
    like($again, qr/^websocket_recv_nb: the connection failed/, 'a later receive fails at once');
    ok($shut, 'the socket was shut down');
    close $c;
}

# --- a ping flood cannot keep a recv_nb loop going ---------------------------------
{
    my ($c, $s) = pair();
    my $pid = fork // die "fork: $!";
    if (!$pid) {    # floods pings for 3 s, reading (and dropping) the pongs
        close $s;
        my $pings = client_frame(9, '') x 1000;
        my $t0 = time;
        $c->blocking(0);
        while (time - $t0 < 3) {
            syswrite($c, $pings);
            sysread($c, my $junk, 1 << 20);
        }
        POSIX::_exit(0);
    }
    close $c;
    my ($env) = request_env($s);
    my @loops;
    Plack::Middleware::SharedArea->wrap(sub {
        uwsgi::websocket_handshake();
        sleep 0.3;
        for (1 .. 5) {
            my ($n, $t) = (0, time);
            $n++ while defined uwsgi::websocket_recv_nb();
            push @loops, time - $t;
        }
        return [ 200, [], [] ];
    }, linger => 0)->($env);
    kill 'KILL', $pid;
    waitpid $pid, 0;
    is(scalar @loops, 5, '`1 while defined websocket_recv_nb()` ends under a ping flood');
    cmp_ok((sort { $b <=> $a } @loops)[0], '<', 2, '... each loop after bounded work (the flood goes on for 3 s)');
}

# --- RFC 6455 8.1: text must be UTF-8 ------------------------------------------------
for my $case (
    [ 'a text message', client_frame(1, "caf\xc3") ],
    [ 'a fragmented text message', client_frame(1, "caf", fin => 0) . client_frame(0, "\xed\xa0\x80") ],
    [ 'a surrogate', client_frame(1, "\xed\xb0\x80") ],
    [ 'beyond U+10FFFF', client_frame(1, "\xf4\x90\x80\x80") ],
    [ 'an overlong form', client_frame(1, "\xc0\xaf") ],
) {
    my ($what, $bytes) = @$case;
    my ($c, $s) = pair();
    my ($env) = request_env($s);
    my $err;
    Plack::Middleware::SharedArea->wrap(sub {
        uwsgi::websocket_handshake();
        syswrite $c, $bytes;
        $err = err_of(sub { uwsgi::websocket_recv() });
        return [ 200, [], [] ];
    }, linger => 0)->($env);
    like($err, qr/^websocket_recv: the peer sent a text message that is not valid UTF-8 \(closed with 1007\)/,
        "invalid UTF-8 in $what: the app is told");
    my ($frames) = frames_after_101(read_all($c, 0.3));
    is(unpack('H*', $frames->[-1]{payload} // ''), '03ef', '... and the client gets close 1007');
}
{
    my ($c, $s) = pair();
    my ($env) = request_env($s);
    my @got;
    Plack::Middleware::SharedArea->wrap(sub {
        uwsgi::websocket_handshake();
        syswrite $c, client_frame(1, "\xef\xbf\xbf \xf0\x9f\x98\x80 caf\xc3\xa9") . client_frame(2, "\xff\xfe");
        push @got, uwsgi::websocket_recv(), uwsgi::websocket_recv();
        syswrite $c, client_frame(8, "\x03\xe8bad \xc3");
        push @got, err_of(sub { uwsgi::websocket_recv() });
        return [ 200, [], [] ];
    }, linger => 0)->($env);
    is($got[0], "\xef\xbf\xbf \xf0\x9f\x98\x80 caf\xc3\xa9", 'valid UTF-8 (a noncharacter, an emoji) passes');
    is($got[1], "\xff\xfe", 'binary messages are not checked');
    like($got[2], qr/^websocket_recv: the peer closed the connection \(its close reason is not valid UTF-8: answered 1007\)/,
        'a close reason that is not UTF-8: the app is told');
    my ($frames) = frames_after_101(read_all($c, 0.3));
    is(unpack('H*', $frames->[-1]{payload} // ''), '03ef', '... and the close is answered with 1007');
}

# --- event-loop sessions (SharedArea::WebSocket->accept) ------------------------------
{
    my ($c, $s) = pair();
    my ($env) = request_env($s);
    my $err;
    Plack::Middleware::SharedArea->wrap(sub { $err = err_of(sub { SharedArea::WebSocket->accept }); [ 200, [], [] ] })->($env);
    like($err, qr/^SharedArea::WebSocket->accept: this server is not an event loop/, 'accept on a blocking server dies');
    is(read_all($c, 0.2), '', '... writing nothing (no 101)');
}
SKIP: {
    skip 'AnyEvent is not installed', 13 unless eval { require AnyEvent; 1 };
    my ($c, $s) = pair();
    my ($env) = request_env($s);
    $env->{'psgi.nonblocking'} = 1;
    my ($ws, @ended, @got);
    my $res = Plack::Middleware::SharedArea->wrap(sub {
        $ws = SharedArea::WebSocket->accept;
        $ws->on_message(sub { push @got, $_[1] });
        $ws->on_end(sub { push @ended, $_[1] });
        return $ws->response;
    }, linger => 0)->($env);
    is(ref $res, 'CODE', 'accept on an event loop: the app returns at once, the session goes on');
    my $big = 'B' x (4 << 20);
    my $t0 = time;
    my $q = $ws->send_binary($big);
    cmp_ok(time - $t0, '<', 2, 'a send of 4 MiB to a client that does not read yet never waits');
    cmp_ok($q, '>', 0, "... and reports what it queued ($q bytes)");
    cmp_ok($ws->queued, '>', $q, '... queued() adds the kernel\'s bytes');
    # a ping while the socket is full: the pong is queued behind, the loop never waits
    $ws->send('after');
    syswrite $c, client_frame(9, 'are you there');
    my @ticks;
    {
        my $cv = AnyEvent->condvar;
        my $t0 = time;
        my $tick = AnyEvent->timer(after => 0.05, interval => 0.05, cb => sub { push @ticks, time - $t0; $cv->send if @ticks == 6 });
        my $limit = AnyEvent->timer(after => 5, cb => sub { $cv->send });
        $cv->recv;
    }
    cmp_ok($ticks[-1], '<', 2, 'the pong to a client that does not read is queued: the loop runs on');
    # the client reads while the loop runs: the queue drains, frames whole and in order
    my $want = length($big) + 10 + 7 + 15;
    my $buf = '';
    my $cv = AnyEvent->condvar;
    my $rd = AnyEvent->io(fh => $c, poll => 'r', cb => sub {
        sysread($c, $buf, 1 << 20, length $buf);
        $cv->send if length($buf) >= length("HTTP/1.1 101") && $buf =~ /\r\n\r\n(.*)\z/s && length($1) >= $want;
    });
    my $t = AnyEvent->timer(after => 10, cb => sub { $cv->send });
    $cv->recv;
    my ($frames) = frames_after_101($buf);
    is_deeply([ map { [ $_->{op}, length $_->{payload} ] } @$frames ], [ [ 2, length $big ], [ 1, 5 ], [ 10, 13 ] ],
        'the queued frames (the pong last) arrive whole and in order as the socket drains');
    # a close code an endpoint may not send: a clear error, nothing changes
    for my $bad (1005, 999, 5000, '1000abc', 1006) {
        like(err_of(sub { $ws->close($bad) }), qr/^close: '\Q$bad\E' is not a close code an endpoint may send/,
            "close($bad) dies naming the code");
    }
    ok(!defined $ws->closed, '... and the session goes on');
    # a message from the client, then it leaves
    syswrite $c, client_frame(1, 'hello');
    close $c;
    $cv = AnyEvent->condvar;
    my $t2 = AnyEvent->timer(after => 5, cb => sub { $cv->send });
    my $w = AnyEvent->timer(after => 0.05, interval => 0.05, cb => sub { $cv->send if @ended });
    $cv->recv;
    is_deeply(\@got, ['hello'], 'messages from the client reach on_message');
    is_deeply(\@ended, [ 'the peer closed the connection' ], 'the session ends by itself when the client leaves, and on_end is told');
}

done_testing();
