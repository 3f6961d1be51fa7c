#!/usr/bin/perl
# The WebSocket protocol layer on a socketpair, byte for byte: handshake
# checks and the exact 101, frames sent, frames received (masking, fragments,
# ping/pong, close, limits, protocol errors), websocket_recv_nb, and the end
# of a session. The same functions under real servers: t/80-websocket-<server>.t.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use IO::Handle;
use IO::Poll ();
use POSIX qw(_exit);
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC MSG_DONTWAIT);
use Time::HiRes qw(time sleep);
use SharedAreaTest::Area qw(err_of);
use SharedAreaTest::Proc qw(require_blib run_perl);
use SharedAreaTest::WebSocket qw(client_frame parse_frames);

require_blib();
require SharedArea;
$SIG{ALRM} = sub { die "test exceeded its time limit\n" };
alarm 120;

my $KEY = 'dGhlIHNhbXBsZSBub25jZQ==';    # RFC 6455 section 1.3

sub pair {
    socketpair(my $client, my $server, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
    $_->autoflush(1) for $client, $server;
    return ($client, $server);
}

sub request_env {
    my ($io, %over) = @_;
    my %env = (
        REQUEST_METHOD => 'GET', SERVER_PROTOCOL => 'HTTP/1.1', HTTP_UPGRADE => 'websocket',
        HTTP_CONNECTION => 'keep-alive, Upgrade', HTTP_SEC_WEBSOCKET_VERSION => 13,
        HTTP_SEC_WEBSOCKET_KEY => $KEY, 'psgix.io' => $io, 'psgi.errors' => \*STDERR,
    );
    for my $k (keys %over) {
        if (defined $over{$k}) { $env{$k} = $over{$k} } else { delete $env{$k} }
    }
    return \%env;
}

# What the client side can read right now, without waiting.
sub pending {
    my ($s, $wait) = @_;
    sleep $wait if $wait;
    my $all = '';
    while (1) {
        my $r = recv($s, my $buf, 1 << 20, MSG_DONTWAIT);
        last unless defined $r && length $buf;
        $all .= $buf;
    }
    return $all;
}

# A session on a fresh socketpair; returns ($client, $env).
sub session {
    my (%over) = @_;
    my ($c, $s) = pair();
    my $env = request_env($s, %over);
    local $SharedArea::WebSocket::ENV = $env;
    uwsgi::websocket_handshake();
    pending($c);
    return ($c, $env);
}


my $area = SharedArea::init('size=16K');
uwsgi::sharedarea_write($area, 0, join '', map { sprintf '<%06x>', $_ } 0 .. 2047);

# --- accept key and installed names -----------------------------------------
is(SharedArea::WebSocket::accept_key($KEY), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=', 'accept_key: the RFC 6455 example');
for my $name (qw(websocket_handshake websocket_send websocket_send_binary websocket_send_from_sharedarea
    websocket_send_binary_from_sharedarea websocket_recv websocket_recv_nb connection_fd)) {
    no strict 'refs';
    ok(\&{"uwsgi::$name"} == \&{"SharedArea::WebSocket::$name"}, "uwsgi::$name is installed");
}

# --- handshake ---------------------------------------------------------------
like(err_of(sub { uwsgi::websocket_handshake() }),
    qr/^websocket_handshake: no current PSGI request: wrap the app in Plack::Middleware::SharedArea/,
    'no current request: a clear error');
like(err_of(sub { uwsgi::websocket_send('x') }), qr/^websocket_send: no current PSGI request/, 'send without a request');
like(err_of(sub { uwsgi::connection_fd() }), qr/^connection_fd: no current PSGI request/, 'connection_fd without a request');

{
    my ($c, $s) = pair();
    my @bad = (
        [ 'POST', { REQUEST_METHOD => 'POST' }, 400, qr/not a WebSocket upgrade request: the method is 'POST', not GET/ ],
        [ 'no Upgrade', { HTTP_UPGRADE => undef }, 400, qr/no 'Upgrade: websocket' header/ ],
        [ 'Upgrade: h2c', { HTTP_UPGRADE => 'h2c' }, 400, qr/no 'Upgrade: websocket' header/ ],
        [ 'Connection: close', { HTTP_CONNECTION => 'close' }, 400, qr/the Connection header \('close'\) does not include 'Upgrade'/ ],
        [ 'HTTP/1.0', { SERVER_PROTOCOL => 'HTTP/1.0' }, 400, qr/it needs HTTP\/1\.1, not 'HTTP\/1\.0'/ ],
        [ 'no version', { HTTP_SEC_WEBSOCKET_VERSION => undef }, 400, qr/no Sec-WebSocket-Version header/ ],
        [ 'version 8', { HTTP_SEC_WEBSOCKET_VERSION => 8 }, 426, qr/unsupported WebSocket version '8' \(this server speaks version 13\)/ ],
        [ 'no key', { HTTP_SEC_WEBSOCKET_KEY => undef }, 400, qr/no Sec-WebSocket-Key header/ ],
        [ 'short key', { HTTP_SEC_WEBSOCKET_KEY => 'abc' }, 400, qr/the Sec-WebSocket-Key 'abc' is not the base64 form of 16 bytes/ ],
        [ 'key of 17 bytes', { HTTP_SEC_WEBSOCKET_KEY => 'dGhlIHNhbXBsZSBub25jZTE=' }, 400, qr/is not the base64 form of 16 bytes/ ],
        [ 'key with bad padding bits', { HTTP_SEC_WEBSOCKET_KEY => 'dGhlIHNhbXBsZSBub25jZR==' }, 400, qr/is not the base64 form/ ],
        [ 'no psgix.io', { 'psgix.io' => undef }, 500, qr/this PSGI server gives no psgix\.io \(the client's socket\), so it cannot serve WebSockets/ ],
        [ 'closed psgix.io', { 'psgix.io' => do { open my $fh, '<', '/dev/null'; close $fh; $fh } }, 500, qr/psgix\.io is not an open socket handle/ ],
    );
    for my $b (@bad) {
        my ($what, $over, $status, $re) = @$b;
        my $env = request_env($s, %$over);
        local $SharedArea::WebSocket::ENV = $env;
        my $err = err_of(sub { uwsgi::websocket_handshake() });
        like($err, qr/^websocket_handshake: /, "$what: refused, naming the function");
        like($err, $re, "$what: the message says why");
        is($env->{'sharedarea.websocket.refused'}[0], $status, "$what: the middleware will answer $status");
        ok(!$env->{'sharedarea.websocket'}, "$what: no session");
    }
    is(pending($c), '', 'refused handshakes wrote nothing to the client');
    my $env = request_env($s, 'sharedarea.websocket.responded' => 1);
    local $SharedArea::WebSocket::ENV = $env;
    like(err_of(sub { uwsgi::websocket_handshake() }), qr/the app already started an HTTP response/,
        'a handshake after the app started a response is refused');
}

{
    my ($c, $s) = pair();
    my $env = request_env($s);
    local $SharedArea::WebSocket::ENV = $env;
    is(uwsgi::connection_fd(), fileno($s), 'connection_fd before the handshake: the socket');
    is(uwsgi::websocket_handshake(), 1, 'handshake returns 1');
    is(pending($c), "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", 'the exact 101 response');
    is(uwsgi::connection_fd(), fileno($s), 'connection_fd: the socket');
    like(err_of(sub { uwsgi::websocket_handshake() }), qr/^websocket_handshake: the WebSocket handshake was already done/,
        'a second handshake dies');
    is(pending($c), '', '... and writes nothing');
}
{
    my ($c, $s) = pair();
    my $env = request_env($s, HTTP_SEC_WEBSOCKET_KEY => 'not even base64', HTTP_ORIGIN => 'http://page.example',
        HTTP_SEC_WEBSOCKET_PROTOCOL => ' mqtt , chat');
    local $SharedArea::WebSocket::ENV = $env;
    uwsgi::websocket_handshake($KEY);
    is(pending($c), "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Origin: http://page.example\r\n"
        . "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
        'a key given wins over the request\'s; the request\'s origin and first protocol are sent back');
}
{
    my ($c, $s) = pair();
    local $SharedArea::WebSocket::ENV = request_env($s);
    like(err_of(sub { uwsgi::websocket_handshake('', "http://x\r\nSet-Cookie: a=b") }),
        qr/^websocket_handshake: the origin 'http:\/\/x\\x0d\\x0aSet-Cookie: a=b' contains a control character/,
        'an origin with a line break is refused');
    like(err_of(sub { uwsgi::websocket_handshake(undef, undef, "chat\n") }), qr/the protocol .* contains a control character/,
        'so is a protocol with one');
    is(pending($c), '', '... and nothing was written');
    like(err_of(sub { uwsgi::websocket_handshake(1, 2, 3, 4) }), qr/^websocket_handshake: usage: /, 'too many arguments');
}

# --- sending -------------------------------------------------------------------
{
    my ($c, $s) = pair();
    local $SharedArea::WebSocket::ENV = request_env($s);
    like(err_of(sub { uwsgi::websocket_send('x') }), qr/^websocket_send: no WebSocket on this request: call uwsgi::websocket_handshake first/,
        'a send before the handshake dies');
    like(err_of(sub { uwsgi::websocket_recv() }), qr/^websocket_recv: no WebSocket on this request/, 'so does a receive');
}
{
    my ($c, $env) = session();
    local $SharedArea::WebSocket::ENV = $env;
    for my $case ([ 0, '8100' ], [ 1, '8101' ], [ 125, '817d' ], [ 126, '817e007e' ], [ 65535, '817effff' ],
        [ 65536, '817f0000000000010000' ]) {
        my ($len, $hdr) = @$case;
        my $msg = 'm' x $len;
        is(uwsgi::websocket_send($msg), $len, "websocket_send of $len bytes returns $len");
        my $got = pending($c, 0.02);
        is(unpack('H*', substr($got, 0, length($hdr) / 2)), $hdr, "$len bytes: header $hdr");
        ok(substr($got, length($hdr) / 2) eq $msg, "$len bytes: the payload, nothing more");
    }
    uwsgi::websocket_send_binary("\x00\xff");
    is(unpack('H*', pending($c)), '820200ff', 'websocket_send_binary: opcode 2');
    uwsgi::websocket_send("caf\x{e9} \x{263a}");
    is(pending($c), "\x81\x09caf\xc3\xa9 \xe2\x98\xba", 'a character string goes out as UTF-8 text');
    my $latin = "\x{e9}\x{263a}";
    chop $latin;    # "\xe9" with the UTF8 flag on
    uwsgi::websocket_send_binary($latin);
    is(pending($c), "\x82\x02\xc3\xa9", 'a binary message with the UTF8 flag: its internal (UTF-8) bytes, as uWSGI sends');
    uwsgi::websocket_send_binary("\x{263a}");
    is(pending($c), "\x82\x03\xe2\x98\xba", 'a wide character in a binary message: its UTF-8 bytes, no die');
    like(err_of(sub { uwsgi::websocket_send(undef) }), qr/^websocket_send: the message is undef/, 'undef dies');
    like(err_of(sub { uwsgi::websocket_send() }), qr/^websocket_send: usage: uwsgi::websocket_send\(\$message\)/, 'no message dies');
    like(err_of(sub { uwsgi::websocket_send_binary(1, 2) }), qr/^websocket_send_binary: usage/, 'two messages die');

    is(uwsgi::websocket_send_binary_from_sharedarea($area, 4, 8), 8, 'send from the area returns the length');
    is(pending($c), "\x82\x08000><000", 'area[4, 12) as a binary frame: pos is honoured');
    is(uwsgi::websocket_send_from_sharedarea($area, 16384 - 8), 8, 'no length: to the end');
    is(pending($c), "\x81\x08<0007ff>", 'area[16376, 16384) as a text frame');
    for my $bad ([ [ $area, 16384, 1 ], qr/area $area: / ], [ [ $area, 0, 16385 ], qr/area $area: / ],
        [ [ $area, -1, 8 ], qr/area $area: .*position|position/ ], [ [ 99, 0, 8 ], qr/area 99|no such area/ ],
        [ [ $area, 'abc' ], qr/position/ ], [ [$area], qr/usage/ ]) {
        my ($args, $re) = @$bad;
        my $err = err_of(sub { uwsgi::websocket_send_binary_from_sharedarea(@$args) });
        like($err, qr/^websocket_send_binary_from_sharedarea: /, "bad range (@$args): dies naming the function");
        like($err, $re, "bad range (@$args): ... and the cause");
        like($err, qr/ at \Q$0\E line \d+\.$/, "bad range (@$args): reported at the caller's line");
    }
    is(pending($c), '', 'failed sends sent nothing');
    ok(!defined $env->{'sharedarea.websocket'}{closed}, 'failed range checks leave the connection usable');
    uwsgi::websocket_send('still here');
    is(pending($c), "\x81\x0astill here", '... as the next send shows');
}

# --- receiving -------------------------------------------------------------------
{
    my ($c, $env) = session();
    local $SharedArea::WebSocket::ENV = $env;
    for my $len (0, 5, 125, 126, 65535, 65536, 200000) {
        my $msg = join '', map { chr(($_ * 13 + 7) & 0xff) } 1 .. $len;
        my $pid = fork // die "fork: $!";
        if (!$pid) { alarm 30; syswrite($c, client_frame(2, $msg)); _exit(0) }
        my $got = uwsgi::websocket_recv();
        waitpid $pid, 0;
        ok($got eq $msg, "a masked $len-byte message is unmasked");
    }
    syswrite $c, client_frame(1, 'one ', fin => 0) . client_frame(9, 'ping-1') . client_frame(0, 'two ', fin => 0)
        . client_frame(10, 'stray pong') . client_frame(9, '') . client_frame(0, 'three');
    is(uwsgi::websocket_recv(), 'one two three', 'fragments joined around control frames');
    is(unpack('H*', pending($c)), unpack('H*', "\x8a\x06ping-1\x8a\x00"), 'each ping answered by a pong with its payload');

    is(uwsgi::websocket_recv_nb(), undef, 'recv_nb: undef when nothing is waiting');
    my $frame = client_frame(2, 'split frame');
    syswrite $c, substr($frame, 0, 1);
    is(uwsgi::websocket_recv_nb(), undef, 'recv_nb: undef after 1 byte of a frame');
    syswrite $c, substr($frame, 1, 8);
    is(uwsgi::websocket_recv_nb(), undef, 'recv_nb: undef after 9 bytes');
    syswrite $c, substr($frame, 9) . client_frame(1, 'next');
    is(uwsgi::websocket_recv_nb(), 'split frame', 'recv_nb: the message once whole');
    is(uwsgi::websocket_recv_nb(), 'next', 'recv_nb: the next one, already buffered');
    is(uwsgi::websocket_recv_nb(), undef, 'recv_nb: then undef again');
    syswrite $c, client_frame(1, 'a', fin => 0);
    is(uwsgi::websocket_recv_nb(), undef, 'recv_nb: undef in the middle of a fragmented message');
    syswrite $c, client_frame(0, 'b');
    is(uwsgi::websocket_recv(), 'ab', 'recv picks up what recv_nb buffered');

    syswrite $c, client_frame(8, pack('n', 1001) . 'going away');
    like(err_of(sub { uwsgi::websocket_recv() }), qr/^websocket_recv: the peer closed the connection at /,
        'a close frame: recv dies');
    is(unpack('H*', pending($c)), '880203e9', '... after answering with the same code');
    like(err_of(sub { uwsgi::websocket_send('x') }), qr/^websocket_send: the peer closed the connection/, 'a send afterwards dies');
    like(err_of(sub { uwsgi::websocket_send_binary_from_sharedarea($area, 0, 8) }),
        qr/^websocket_send_binary_from_sharedarea: the peer closed the connection/, 'so does a send from the area');
    like(err_of(sub { uwsgi::websocket_recv_nb() }), qr/^websocket_recv_nb: the peer closed the connection/, 'and a receive');
    is(pending($c), '', 'nothing more was sent');
    SharedArea::WebSocket::_end_session($env->{'sharedarea.websocket'}, 0);
    is(pending($c), '', 'the end of the session sends no second close');
}
for my $case ([ 'empty close', '', '880203e8' ], [ 'close 1005 (reserved)', pack('n', 1005), '880203ea' ],
    [ 'close 4000', pack('n', 4000), '88020fa0' ], [ 'close with 1 byte', "\x03", '880203ea' ]) {
    my ($what, $payload, $reply) = @$case;
    my ($c, $env) = session();
    local $SharedArea::WebSocket::ENV = $env;
    syswrite $c, client_frame(8, $payload);
    like(err_of(sub { uwsgi::websocket_recv() }), qr/the peer closed the connection/, "$what: recv dies");
    is(unpack('H*', pending($c)), $reply, "$what: answered with $reply");
}
{
    my ($c, $env) = session();
    local $SharedArea::WebSocket::ENV = $env;
    close $c;
    like(err_of(sub { uwsgi::websocket_recv() }), qr/^websocket_recv: the peer closed the connection/,
        'the client socket closed without a close frame: recv dies');
    like(err_of(sub { uwsgi::websocket_send('x') }), qr/^websocket_send: the peer closed the connection/, 'then a send dies');
}
{
    my ($c, $env) = session();
    local $SharedArea::WebSocket::ENV = $env;
    local $SIG{PIPE} = 'DEFAULT';    # a SIGPIPE would kill this test
    close $c;
    my $err = err_of(sub { uwsgi::websocket_send('x' x 100000) for 1 .. 3 });
    like($err, qr/^websocket_send: the peer closed the connection/, 'a send to a closed socket dies, without SIGPIPE');
    like(err_of(sub { uwsgi::websocket_send_binary_from_sharedarea($area, 0) }), qr/the peer closed the connection/,
        'and so does the next one');
}

# protocol errors and limits: close 1002 / 1009, and the call dies
for my $case (
    [ 'unmasked frame', client_frame(2, 'x', mask => ''), 1002, qr/protocol error from the peer: an unmasked frame/ ],
    [ 'reserved bits', client_frame(2, 'x', rsv => 2), 1002, qr/reserved bits 0x20 set/ ],
    [ 'stray continuation', client_frame(0, 'x'), 1002, qr/a continuation frame outside a fragmented message/ ],
    [ 'new message inside a fragmented one', client_frame(1, 'x', fin => 0) . client_frame(2, 'y'), 1002,
        qr/a new message before the fragmented one ended/ ],
    [ 'fragmented ping', client_frame(9, 'x', fin => 0), 1002, qr/a fragmented control frame/ ],
    [ 'ping of 126 bytes', client_frame(9, 'p' x 126), 1002, qr/a control frame of 126 bytes/ ],
    [ 'opcode 0xb', client_frame(0xb, ''), 1002, qr/unknown control opcode 0xb/ ],
    [ 'opcode 3', client_frame(3, ''), 1002, qr/unknown data opcode 0x3/ ],
    [ '64-bit length with the top bit', "\x82\xff" . pack('NN', 0x80000000, 0) . 'mask', 1002,
        qr/a 64-bit frame length with its top bit set/ ],
    [ 'a message of 16 MiB + 1 (the default limit)', client_frame(2, '', declare => 16 * 1024 * 1024 + 1), 1009,
        qr/a message of 16777217 bytes is over the limit of 16777216 bytes \(enable 'SharedArea', max_message => \.\.\.\); closed with 1009/ ],
    ) {
    my ($what, $bytes, $code, $re) = @$case;
    my ($c, $env) = session();
    local $SharedArea::WebSocket::ENV = $env;
    syswrite $c, $bytes;
    my $err = err_of(sub { uwsgi::websocket_recv() });
    like($err, qr/^websocket_recv: /, "$what: recv dies");
    like($err, $re, "$what: ... saying why");
    is(unpack('H*', pending($c)), unpack('H*', pack('CCn', 0x88, 2, $code)), "$what: close $code was sent");
    like(err_of(sub { uwsgi::websocket_recv() }), qr/^websocket_recv: the connection was closed after/,
        "$what: the next call dies too");
}
{
    my ($c, $env) = session('sharedarea.websocket.options' => { max_message => 10 });
    local $SharedArea::WebSocket::ENV = $env;
    syswrite $c, client_frame(1, '0123456789');
    is(uwsgi::websocket_recv(), '0123456789', 'max_message 10: a 10-byte message is fine');
    syswrite $c, client_frame(1, '01234', fin => 0) . client_frame(0, '56789', fin => 0) . client_frame(0, 'X');
    like(err_of(sub { uwsgi::websocket_recv() }), qr/a message of 11 bytes is over the limit of 10 bytes/,
        'max_message 10: fragments adding up to 11 bytes are refused');
    is(unpack('H*', pending($c)), '880203f1', '... with close 1009');
}
{
    # Fragments past the default limit, streamed by another process: refused
    # when the limit is crossed, memory stays near the limit.
    my ($c, $env) = session();
    local $SharedArea::WebSocket::ENV = $env;
    my $rss0 = rss_kib();
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        alarm 30;
        local $SIG{PIPE} = 'IGNORE';
        my $chunk = 'f' x (1 << 20);
        syswrite($c, client_frame($_ ? 0 : 2, $chunk, fin => 0)) or last for 0 .. 63;
        _exit(0);
    }
    my $err = err_of(sub { uwsgi::websocket_recv() });
    like($err, qr/a message of 17825792 bytes is over the limit of 16777216 bytes/, 'fragments past 16 MiB are refused at the 17th');
    my $grew = rss_kib() - $rss0;
    ok($grew < 48 * 1024, "memory grew by $grew KiB (bounded by the limit, not by what the client sends)");
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

# --- the end of a session --------------------------------------------------------
{
    my ($c, $env) = session('sharedarea.websocket.options' => { linger => 0.4 });
    local $SharedArea::WebSocket::ENV = $env;
    uwsgi::websocket_send('last words');
    my $ws = $env->{'sharedarea.websocket'};
    my $t0 = time;
    SharedArea::WebSocket::_end_session($ws, 0);
    my $took = time - $t0;
    ok($took >= 0.35 && $took < 2, sprintf 'a client that does not close is waited for `linger` seconds (%.2f s)', $took);
    my $got = pending($c);
    is(unpack('H*', $got), unpack('H*', "\x81\x0alast words\x88\x02\x03\xe8"), 'the client got its frames and close 1000');
    my $r = sysread($c, my $buf, 10);
    is($r, 0, 'then the end of the stream');
    is(readlink('/proc/self/fd/' . $ws->{fd}), '/dev/null', 'the server side descriptor now holds /dev/null');
    ok(defined fileno($env->{'psgix.io'}), "the server's handle stays open (the server closes it itself)");
    ok(syswrite($env->{'psgix.io'}, 'HTTP/1.1 200 OK'), "a server's late write goes nowhere, without an error");
    is(pending($c), '', '... and never reaches the client');
    like(err_of(sub { uwsgi::websocket_send('x') }), qr/^websocket_send: the WebSocket session has ended/, 'a send after the end dies');
}
{
    my ($c, $env) = session('sharedarea.websocket.options' => { linger => 5 });
    local $SharedArea::WebSocket::ENV = $env;
    my $pid = fork // die "fork: $!";
    if (!$pid) {    # a well-behaved client: answers the close, then closes
        alarm 30;
        my $buf = '';
        while (sysread($c, $buf, 4096, length $buf)) {
            last if $buf =~ /\x88\x02/;
        }
        syswrite $c, client_frame(8, pack 'n', 1000);
        close $c;
        _exit(0);
    }
    close $c;    # the child holds the client end now
    my $t0 = time;
    SharedArea::WebSocket::_end_session($env->{'sharedarea.websocket'}, 1);
    ok(time - $t0 < 2, 'a client that answers the close ends the session at once');
    waitpid $pid, 0;
}
{
    # a client that answers the close but keeps its socket open, after
    # sending a big frame first: the frame is skipped, the close ends it
    my ($c, $env) = session('sharedarea.websocket.options' => { linger => 5 });
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        alarm 30;
        syswrite $c, client_frame(2, 'd' x 300000);
        my $buf = '';
        while (sysread($c, $buf, 4096, length $buf)) {
            last if $buf =~ /\x88\x02/;
        }
        syswrite $c, client_frame(8, pack 'n', 1000);
        sleep 10;
        _exit(0);
    }
    my $t0 = time;
    SharedArea::WebSocket::_end_session($env->{'sharedarea.websocket'}, 0);
    ok(time - $t0 < 2, "the peer's close frame ends the session at once, even while its socket stays open");
    kill 'KILL', $pid;
    waitpid $pid, 0;
}
{
    my ($c, $env) = session('sharedarea.websocket.options' => { linger => 0 });
    SharedArea::WebSocket::_end_session($env->{'sharedarea.websocket'}, 1);
    is(unpack('H*', pending($c)), '880203f3', 'after an app error: close 1011');
}

# --- waiting on a descriptor above 1024 (where select(2) stops) -------------------
# A session's waits poll its own descriptor, whatever its number: the wait
# that SharedArea::_ws_poll does (timeout, readiness, the peer's hang-up, a
# signal), and websocket_recv waiting for a message and for the peer's end.
SKIP: {
    my $high = 1500;
    my ($c, $s) = pair();
    skip "descriptor $high is past this process's limit (ulimit -n)", 12
        unless defined POSIX::dup2(fileno $s, $high);
    close $s;
    open my $io, '+<&=', $high or die "fd $high: $!";
    my %st = SharedArea::_ws_statuses();
    my ($POLLIN, $POLLHUP) = (IO::Poll::POLLIN(), IO::Poll::POLLHUP());

    my $t0 = time;
    is(SharedArea::_ws_poll($high, $POLLIN, 200), 0, "_ws_poll on fd $high: 0 when nothing came in time");
    ok(time - $t0 >= 0.15, '... after waiting about the timeout');
    {
        my $ran = 0;
        local $SIG{USR1} = sub { $ran++ };
        my $parent = $$;
        my $pid = fork // die "fork: $!";
        if (!$pid) { sleep 0.2; kill 'USR1', $parent; _exit(0) }
        my $r = SharedArea::_ws_poll($high, $POLLIN, 10_000);
        my $errno = $! + 0;
        waitpid $pid, 0;
        is($r, -1, '_ws_poll: -1 when a signal arrives during the wait');
        is($errno, EINTR, '... with $! EINTR');
        is($ran, 1, '... and the %SIG handler has run when it returns');
    }
    syswrite $c, 'x';
    ok(SharedArea::_ws_poll($high, $POLLIN, 1000) & $POLLIN, '_ws_poll: POLLIN when there is something to read');
    sysread $io, my $x, 1;

    my $env = request_env($io);
    local $SharedArea::WebSocket::ENV = $env;
    uwsgi::websocket_handshake();
    pending($c);
    is(uwsgi::connection_fd(), $high, "a session on fd $high");
    my $pid = fork // die "fork: $!";
    if (!$pid) { alarm 30; sleep 0.3; syswrite($c, client_frame(1, 'late')); _exit(0) }
    $t0 = time;
    is(uwsgi::websocket_recv(), 'late', 'websocket_recv waits on it for a message');
    ok(time - $t0 >= 0.2, '... that came later');
    waitpid $pid, 0;

    $pid = fork // die "fork: $!";
    if (!$pid) { alarm 30; sleep 0.3; _exit(0) }    # holds the client end, then drops it
    close $c;
    ok(!eval { uwsgi::websocket_recv(); 1 }, 'websocket_recv dies when the peer goes away meanwhile');
    is(do { no warnings 'once'; $SharedArea::WebSocket::STATUS }, $st{PEER_CLOSED}, '... as PEER_CLOSED');
    waitpid $pid, 0;
    ok(SharedArea::_ws_poll($high, $POLLIN, 1000) & $POLLHUP, '_ws_poll: POLLHUP once the peer has gone');
    SharedArea::WebSocket::_end_session($env->{'sharedarea.websocket'}, 0);
}

sub rss_kib {
    open my $fh, '<', "/proc/$$/status" or return 0;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}

done_testing();
