# The XS entry points SharedArea::WebSocket sends through: one RFC 6455
# server frame per call, from Perl bytes or straight from an area, on a
# socketpair whose other end this test reads byte by byte; and the message
# values uwsgi::websocket_send takes (overloaded objects, wide strings).
use strict;
use warnings;
use Test::More;
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC);
use IO::Handle;
use POSIX ();

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea;
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedAreaTest::Area qw(err_of);

alarm 60;

my $id   = SharedArea::init('1');
my $size = SharedArea::info($id)->{size};
my $data = join '', map { chr(($_ * 31 + 7) % 256) } 0 .. $size - 1;
uwsgi::sharedarea_write($id, 0, $data);


sub pair {
    socketpair(my $server, my $client, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
    return ($server, $client);
}

# Reads exactly N bytes from FH (or dies after the alarm).
sub take {
    my ($fh, $n) = @_;
    my $buf = '';
    while (length $buf < $n) {
        my $got = sysread $fh, $buf, $n - length $buf, length $buf;
        die "read: $!" unless defined $got;
        last if $got == 0;
    }
    return $buf;
}

# The header of a final, unmasked frame with OPCODE and a payload of LEN bytes.
sub header {
    my ($opcode, $len) = @_;
    my $h = chr(0x80 | $opcode);
    return $h . chr($len) if $len < 126;
    return $h . chr(126) . pack('n', $len) if $len < 65536;
    return $h . chr(127) . pack('Q>', $len);
}

my ($s, $c) = pair();
my $fd = fileno $s;

is(SharedArea::_ws_send('websocket_send', $fd, 1, 'hello'), 5, '_ws_send returns the payload length');
is(take($c, 7), "\x81\x05hello", 'a text frame: FIN, opcode 1, 7-bit length, unmasked');
is(SharedArea::_ws_send('websocket_send_binary', $fd, 2, ''), 0, 'an empty binary frame');
is(take($c, 2), "\x82\x00", '... is 2 bytes');

for my $len (125, 126, 65535, 65536, 200_000) {
    my $msg = substr($data x (1 + int($len / $size)), 0, $len);
    my $reader = fork // die;
    if (!$reader) {    # read concurrently so large frames cannot fill the socket
        close $s;
        my $frame = take($c, length(header(2, $len)) + $len);
        POSIX::_exit($frame eq header(2, $len) . $msg ? 0 : 1);
    }
    is(SharedArea::_ws_send('websocket_send_binary', $fd, 2, $msg), $len, "$len bytes sent");
    waitpid $reader, 0;
    is($?, 0, "... framed with the right length encoding and bytes");
}

my $latin = "caf\xE9";
utf8::upgrade($latin);
SharedArea::_ws_send('websocket_send', $fd, 1, $latin);
is(take($c, 7), "\x81\x05caf\xC3\xA9", 'a character string goes out as its internal (UTF-8) bytes, as uWSGI sends');
is(SharedArea::_ws_send('websocket_send_binary', $fd, 2, "\x{263A}"), 3, 'wide characters are sent');
is(take($c, 5), "\x82\x03\xE2\x98\xBA", '... as their UTF-8 bytes');
ok(!eval { SharedArea::_ws_send('websocket_send', $fd, 1, undef); 1 }, 'undef dies');
like($@, qr/^websocket_send: message is undef/, '... naming the function');
ok(!eval { SharedArea::_ws_send('websocket_send', -1, 1, 'x'); 1 }, 'a negative fd dies');
like($@, qr/^websocket_send: file descriptor -1 is negative/, '... naming the function');
ok(!eval { SharedArea::_ws_send('websocket_send', $fd, 300, 'x'); 1 }, 'opcode 300 dies');
like($@, qr/^websocket_send: opcode 300 /, '... naming the function');

# --- from an area
is(SharedArea::_ws_send_from_area('websocket_send_binary_from_sharedarea', $fd, 2, $id, 100, 50), 50,
   '_ws_send_from_area returns the payload length');
is(take($c, 52), "\x82\x32" . substr($data, 100, 50), 'the bytes at pos, not at 0');
is(SharedArea::_ws_send_from_area('websocket_send_from_sharedarea', $fd, 1, $id, $size - 10), 10,
   'no len: to the end');
is(take($c, 12), "\x81\x0a" . substr($data, -10), '... the last bytes');
SharedArea::set_used($id, 20);
is(SharedArea::_ws_send_from_area('websocket_send_from_sharedarea', $fd, 1, $id, 5, 0), 15, 'len 0 stops at used');
is(take($c, 17), "\x81\x0f" . substr($data, 5, 15), '... the bytes up to used');
SharedArea::honour_used($id, 0);

my $F = 'websocket_send_from_sharedarea';
for my $bad (
    [[$id, $size - 10, 11], qr/^$F: area 0: 11 bytes at \d+ run past the end/, 'a range past the end'],
    [[$id, $size],          qr/^$F: area 0: position $size is at or past the end/, 'pos at the end'],
    [[$id, -1],             qr/^$F: area 0: position -1 is negative/, 'a negative pos'],
    [[$id, 0, 2**64],       qr/^$F: area 0: length \S+ is too large/, 'len 2**64'],
    [[7, 0],                qr/^$F: area 7: no such area/, 'an area that does not exist'],
    [[-1, 0],               qr/^$F: area -1: no such area/, 'a negative id'],
) {
    my ($args, $re, $name) = @$bad;
    ok(!eval { SharedArea::_ws_send_from_area($F, $fd, 1, @$args); 1 }, "$name dies");
    like($@, $re, "... $name: message");
}
$c->blocking(0);
my $junk = '';
sysread $c, $junk, 100;
is($junk, '', 'the failed sends wrote nothing');

# --- uwsgi::websocket_send with odd message values, on a socketpair session -------
{
    my ($client, $server);
    {
        socketpair($client, $server, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
        $_->autoflush(1) for $client, $server;
    }
    my $env = {
        REQUEST_METHOD => 'GET', SERVER_PROTOCOL => 'HTTP/1.1', HTTP_UPGRADE => 'websocket',
        HTTP_SEC_WEBSOCKET_VERSION => 13, HTTP_SEC_WEBSOCKET_KEY => 'dGhlIHNhbXBsZSBub25jZQ==',
        'psgix.io' => $server, 'psgi.errors' => \*STDERR,
    };
    sub client_read {
        my $buf = '';
        my $rin = '';
        vec($rin, fileno($client), 1) = 1;
        while (select(my $r = $rin, undef, undef, 0.2)) {
            sysread($client, $buf, 65536, length $buf) or last;
        }
        return $buf;
    }
    {
        local $SharedArea::WebSocket::ENV = $env;
        uwsgi::websocket_handshake();
        client_read();

        {
            package SharedAreaTest::Stringy;
            use overload '""' => sub { ${ $_[0] } }, fallback => 1;
        }
        {
            # An object with overloaded "" is sent as its string, like any string.
            my $obj = bless \(my $s = "\x{263a}"), 'SharedAreaTest::Stringy';
            my $e = err_of(sub { uwsgi::websocket_send($obj) });
            is($e, '', 'websocket_send($object with overloaded "") sends its string as UTF-8');
            is(unpack('H*', client_read()), '8103e298ba', '... as one text frame of the UTF-8 bytes');
        }
        # A plain character string is sent as UTF-8, a byte string as is.
        uwsgi::websocket_send("\x{263a}");
        is(unpack('H*', client_read()), '8103e298ba', 'websocket_send of a wide string sends its UTF-8');
        is(err_of(sub { uwsgi::websocket_send_binary("\x{263a}") }), '',
            'websocket_send_binary of a wide string sends (as uWSGI does)');
        is(unpack('H*', client_read()), '8203e298ba', '... its UTF-8 bytes in one binary frame');
    }
}

# --- the peer is gone
close $c;
local $SIG{PIPE} = 'DEFAULT';    # a SIGPIPE would kill the test: the send must not raise it
ok(!eval { SharedArea::_ws_send('websocket_send', $fd, 1, 'anyone?'); 1 }, 'a send to a closed peer dies');
is($@ =~ s/ at .*//sr, 'websocket_send: the peer closed the connection', '... saying the peer closed the connection');
ok(!eval { SharedArea::_ws_send_from_area($F, $fd, 1, $id, 0, 100); 1 }, 'a send from an area to a closed peer dies');
is($@ =~ s/ at .*//sr, "$F: the peer closed the connection", '... the same way');

done_testing();
