package SharedArea::WebSocket;

# WebSockets (RFC 6455) for PSGI apps, under uWSGI's Perl names.
#
# The handshake and the receiving side live here, in Perl: they are protocol
# logic on the request's own socket (PSGI's psgix.io). Data frames go out
# through the XS module (SharedArea::_ws_send / _ws_send_from_area), which
# calls the Rust core: it builds the frame header and, for sends from an area,
# writes straight from shared memory without holding the area's lock across a
# slow client. Control frames (pong, close) are built here and written with a
# bounded wait, so that answering a ping or closing never hangs a worker.
#
# A send that waits for a stalled client gives way to signals: the core
# returns at the first one, the XS runs the %SIG handlers and finishes the
# frame (SharedArea::_ws_flush). A handler that dies aborts the send; the
# frame's unsent rest stays in the core, keyed by the socket's fd, and goes
# out before anything else on this session (the next data frame, a pong or
# close), so frames stay whole and in order. Those bytes are dropped
# (SharedArea::_ws_forget) at the end of the session, and at every handshake,
# so that a new connection that got an old one's fd number never gets them.
#
# Per-request state lives in the PSGI env under 'sharedarea.websocket'; the
# current env is $SharedArea::WebSocket::ENV, set (local) by
# Plack::Middleware::SharedArea around the app call.

use strict;
use warnings;

use Carp ();
use Digest::SHA ();
use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use Fcntl qw(F_SETFD FD_CLOEXEC);
use IO::Poll qw(POLLIN POLLOUT POLLERR POLLHUP);
use MIME::Base64 ();
use POSIX ();
use Scalar::Util ();
use SharedArea ();    # the XS this module sends through (it loads this module too)
use Socket qw(MSG_DONTWAIT MSG_NOSIGNAL SHUT_RDWR SHUT_WR);
use Time::HiRes ();

our $VERSION = '1.0.0';

# The PSGI env of the request being served (local-ised by the middleware).
our $ENV;

# Defaults; Plack::Middleware::SharedArea's options override them per app.
our $MAX_MESSAGE     = 16 * 1024 * 1024;    # bytes of one incoming message
our $LINGER          = 2;                   # seconds to wait for the peer at the end
our $CONTROL_TIMEOUT = 10;                  # seconds a pong or close frame may take
our $PING_INTERVAL   = 30;                  # seconds of silence from the client before a ping
our $PONG_TIMEOUT    = 10;                  # seconds the client has to answer it
our $RECV_BUDGET     = 65536;               # bytes websocket_recv_nb reads per call

# The status of the last failure that ended a connection, as the C ABI numbers
# them (SHAREDAREA_E_PEER_CLOSED, SHAREDAREA_E_CONNECTION_FAILED); set by the
# XS on a failed send too. 0 when the last call did not end a connection.
our $STATUS = 0;

# Status numbers by name, from the XS (the C header's values).
my %STATUS_OF;
sub _status_of {
    my ($name) = @_;
    %STATUS_OF = SharedArea::_ws_statuses() if !%STATUS_OF;
    return defined $STATUS_OF{$name} ? $STATUS_OF{$name} : 0;
}

use constant {
    SESSION => 'sharedarea.websocket',             # env key: the session after the handshake
    OPTIONS => 'sharedarea.websocket.options',     # env key: { max_message, linger, ping_interval, pong_timeout }
    REFUSED => 'sharedarea.websocket.refused',     # env key: [status, headers, message]
    STARTED => 'sharedarea.websocket.responded',   # env key: the app already started a response
    GUID    => '258EAFA5-E914-47DA-95CA-C5AB0DC85B11',
};

# The core's text for a close this module detects itself (a close frame, the
# end of the stream): one wording per condition, src/status.rs's.
use constant PEER_CLOSED => SharedArea::_strerror(SharedArea::Error->code('E_PEER_CLOSED'));

my @UWSGI_NAMES = qw(
    websocket_handshake websocket_send websocket_send_binary
    websocket_send_from_sharedarea websocket_send_binary_from_sharedarea
    websocket_recv websocket_recv_nb connection_fd
);

# Install into package uwsgi, leaving alone any function that already exists
# there (inside a real uWSGI host, uWSGI's own).
{
    no strict 'refs';
    for my $name (@UWSGI_NAMES) {
        next if defined &{"uwsgi::$name"};
        *{"uwsgi::$name"} = \&{"SharedArea::WebSocket::$name"};
    }
}

=head1 NAME

SharedArea::WebSocket - uWSGI's WebSocket functions for PSGI apps on any server

=head1 SYNOPSIS

    # app.psgi: every viewer gets each frame a producer writes into the area
    use SharedArea;                 # loads this module too
    use Plack::Builder;

    my $id = SharedArea::init('name=frames');    # attach the producer's area

    my $app = sub {
        my $env = shift;
        uwsgi::websocket_handshake();          # the request's own Sec-WebSocket-Key
        while (1) {                            # until the client leaves:
            # the next update, or 1 s without one (the producer paused)
            if (eval { uwsgi::sharedarea_wait($id, 0, 1); 1 }) {
                uwsgi::websocket_send_binary_from_sharedarea($id, 0);   # dies once it has gone
            }
            # pongs, keep-alive pings; dies when the client has closed
            for (1 .. 16) { last unless defined uwsgi::websocket_recv_nb() }
        }
    };
    builder { enable 'SharedArea', max_message => 4096; $app };

This keeps one worker per viewer (Starman, Starlet). On an event-loop
server one process serves every viewer: see L</EVENT LOOPS>, which is what
the demo (C<scripts/demo>, F<examples/demo/app.psgi>) does.

=head1 DESCRIPTION

Loading this module installs the functions below into package C<uwsgi>
under uWSGI's names, except those that already exist there (inside a real
uWSGI host, uWSGI's own stay). They work on the current request, which
L<Plack::Middleware::SharedArea> makes known (C<$SharedArea::WebSocket::ENV>)
while the app runs, and on the request's socket, which the PSGI server gives
as C<psgix.io>.

After C<websocket_handshake> the connection belongs to the app: the server
writes nothing more into it, and when the app returns (or dies) the
middleware ends the session (a close frame if none was exchanged, then the
socket is shut down) and lets the server go on with its next request.

Every failure dies with a message that starts with the function's name,
e.g. C<websocket_recv: the peer closed the connection>.

A send that waits for a slow or stalled client lets signals in: a C<%SIG>
handler (an C<alarm>, the server's C<TERM> or C<QUIT>) runs at once, and
then the send goes on. When the handler dies (or exits), the send stops
there with the handler's error; the rest of that frame is kept and goes out
first on the session's next send (or pong, or close frame), so the client
still receives whole frames in order. If the session ends first, the rest is
dropped and no close frame follows the partial one (it could not be told
from the payload).

Frames sent are final (FIN), unmasked server frames: opcode 1 (text) or 2
(binary), with 7-, 16- or 64-bit lengths. Messages received are returned as
byte strings, text messages as their UTF-8 bytes (as uWSGI does).

A client must wait for the 101 before it sends frames (RFC 6455, 4.1): bytes
sent earlier may sit in the server's own read buffer, where they are not
seen.

=head1 VARIABLES

=over 4

=item C<$SharedArea::WebSocket::ENV>

The PSGI env of the request being served; set (with C<local>) by the
middleware. Code that calls the app itself can set it the same way.

=item C<$SharedArea::WebSocket::MAX_MESSAGE> (16 MiB), C<$SharedArea::WebSocket::LINGER> (2 s)

The defaults of the middleware's C<max_message> and C<linger> options.

=item C<$SharedArea::WebSocket::CONTROL_TIMEOUT> (10 s)

How long writing the 101, a pong or a close frame may wait for a full socket
before the connection is given up.

=item C<$SharedArea::WebSocket::PING_INTERVAL> (30 s), C<$SharedArea::WebSocket::PONG_TIMEOUT> (10 s)

The defaults of the middleware's keep-alive options C<ping_interval> and
C<pong_timeout> (see L<Plack::Middleware::SharedArea/OPTIONS>).

=item C<$SharedArea::WebSocket::STATUS>

After a call died because the connection ended: the C ABI's status number
saying how, C<SHAREDAREA_E_PEER_CLOSED> (the client closed) or
C<SHAREDAREA_E_CONNECTION_FAILED> (see L</Failures>); the numbers by name
come from C<SharedArea::_ws_statuses()>. Decide on this, not on the
message's wording.

=back

=head1 Failures

A session ends in one of three ways: the client closes (a close frame, or
the end of its stream: C<the peer closed the connection>); the app returns;
or the connection fails, and then it is broken for good:

=over 4

=item *

a send that the client stops taking part-way through a frame, for longer
than the send timeout (the middleware's C<send_timeout>, 60 s by default);

=item *

a pong, ping or close frame that cannot be written within
C<$CONTROL_TIMEOUT>;

=item *

a client that answers no ping (the keep-alive policy, on by default: see
the middleware's C<ping_interval> and C<pong_timeout>).

=back

Then no further frame is sent (the client may hold part of one: anything
after it would be read as its payload, so not even a close frame follows),
the socket is shut down both ways, and this call and every later send or
receive on the session die at once with C<the connection failed (...)> and
C<$STATUS> set to C<SHAREDAREA_E_CONNECTION_FAILED>.

A send that gives up before any byte of its frame left (the socket was
already full) leaves the stream whole: it dies with C<timed out>, and the
app may try again.

=head1 FUNCTIONS

=head2 uwsgi::websocket_handshake([$key[, $origin[, $proto]]])

Answers the current request's WebSocket upgrade with
C<101 Switching Protocols>, written straight to the client's socket.
C<$key> defaults (when absent, undef or empty) to the request's
C<Sec-WebSocket-Key>; C<Sec-WebSocket-Accept> is computed from it. C<$origin>
(default: the request's C<Origin>, if any) is sent back as
C<Sec-WebSocket-Origin>, as uWSGI does. C<$proto> (default: the first
protocol the client offered in C<Sec-WebSocket-Protocol>, if any) is sent as
C<Sec-WebSocket-Protocol>.

Dies, and writes nothing, when the request is not a valid WebSocket upgrade
(not C<GET>, not HTTP/1.1, no C<Upgrade: websocket>, a C<Connection> header
without C<Upgrade>, a C<Sec-WebSocket-Version> other than 13, a missing or
malformed key), when the server gives no C<psgix.io>, when there is no
current request (the app is not wrapped in the middleware), when the
handshake was already done, or when the app has already started an HTTP
response. If such an error escapes the app, the middleware answers the
request with it (400, 426 with C<Sec-WebSocket-Version: 13>, or 500).
Returns 1.

=cut

sub websocket_handshake {
    my ($key, $origin, $proto) = @_;
    my $F = 'websocket_handshake';
    Carp::croak("$F: usage: uwsgi::$F([\$key[, \$origin[, \$proto]]])") if @_ > 3;
    my $env = _env($F);
    Carp::croak("$F: the WebSocket handshake was already done on this request") if $env->{+SESSION};
    _refuse($env, 500, "$F: the app already started an HTTP response on this request")
        if $env->{+STARTED};

    my $method = defined $env->{REQUEST_METHOD} ? $env->{REQUEST_METHOD} : '';
    _refuse($env, 400, "$F: not a WebSocket upgrade request: the method is '$method', not GET")
        if $method ne 'GET';
    _refuse($env, 400, "$F: not a WebSocket upgrade request: no 'Upgrade: websocket' header")
        unless _has_token($env->{HTTP_UPGRADE}, 'websocket');
    # Starman takes Connection out of the env; when a server kept it, it must say Upgrade.
    _refuse($env, 400, "$F: not a WebSocket upgrade request: the Connection header"
            . " ('$env->{HTTP_CONNECTION}') does not include 'Upgrade'")
        if defined $env->{HTTP_CONNECTION} && !_has_token($env->{HTTP_CONNECTION}, 'upgrade');
    my $protocol = defined $env->{SERVER_PROTOCOL} ? $env->{SERVER_PROTOCOL} : '';
    _refuse($env, 400, "$F: not a WebSocket upgrade request: it needs HTTP/1.1, not '$protocol'")
        unless $protocol =~ m{^HTTP/(\d+)\.(\d+)$} && ($1 > 1 || ($1 == 1 && $2 >= 1));
    my $version = $env->{HTTP_SEC_WEBSOCKET_VERSION};
    _refuse($env, 400, "$F: not a WebSocket upgrade request: no Sec-WebSocket-Version header")
        unless defined $version;
    _refuse($env, 426, "$F: unsupported WebSocket version '$version' (this server speaks version 13)",
            [ 'Sec-WebSocket-Version' => '13' ])
        unless $version =~ /^\s*13\s*$/;

    $key = $env->{HTTP_SEC_WEBSOCKET_KEY} unless defined $key && length $key;
    _refuse($env, 400, "$F: not a WebSocket upgrade request: no Sec-WebSocket-Key header")
        unless defined $key && length $key;
    $key =~ s/^\s+|\s+$//g;
    _refuse($env, 400, "$F: the Sec-WebSocket-Key '" . _printable($key)
            . "' is not the base64 form of 16 bytes")
        unless $key =~ m{^[A-Za-z0-9+/]{21}[AQgw]==$};

    $origin = $env->{HTTP_ORIGIN} unless defined $origin && length $origin;
    if (!(defined $proto && length $proto) && defined $env->{HTTP_SEC_WEBSOCKET_PROTOCOL}) {
        ($proto) = grep { length } map { (my $t = $_) =~ s/^\s+|\s+$//g; $t }
            split /,/, $env->{HTTP_SEC_WEBSOCKET_PROTOCOL};
    }
    for ([ origin => $origin ], [ protocol => $proto ]) {
        my ($what, $v) = @$_;
        Carp::croak("$F: the $what '" . _printable($v) . "' contains a control character")
            if defined $v && $v =~ /[\x00-\x1f\x7f]/;
        Carp::croak("$F: the $what contains a wide character") if defined $v && $v =~ /[^\x00-\xff]/;
    }

    _refuse($env, 500, "$F: this PSGI server gives no psgix.io (the client's socket), so it cannot"
            . " serve WebSockets; use Starman, Starlet, Twiggy, Feersum or plackup's default server")
        unless exists $env->{'psgix.io'};
    # Reading psgix.io hands the connection over to us on some servers (Feersum).
    my $io = $env->{'psgix.io'};
    my $fd = defined $io ? eval { fileno $io } : undef;
    _refuse($env, 500, "$F: the server's psgix.io is not an open socket handle")
        unless defined $fd && $fd >= 0;

    my $opt = $env->{+OPTIONS} || {};
    my $ws = {
        io             => $io,
        fd             => $fd,
        rbuf           => '',       # bytes read, not yet parsed
        need           => 2,        # bytes the next parse step waits for
        frag           => undef,    # the fragmented message so far
        frag_op        => 0,
        max_message    => defined $opt->{max_message} ? $opt->{max_message} : $MAX_MESSAGE,
        linger         => defined $opt->{linger} ? $opt->{linger} : $LINGER,
        ping_interval  => defined $opt->{ping_interval} ? $opt->{ping_interval} : $PING_INTERVAL,
        pong_timeout   => defined $opt->{pong_timeout} ? $opt->{pong_timeout} : $PONG_TIMEOUT,
        heard          => Time::HiRes::time(),    # when the client's last whole frame arrived
        ping_sent      => undef,    # when our unanswered ping left
        close_sent     => 0,
        close_received => 0,
        closed         => undef,    # why no more frames can flow
        broken         => 0,        # the socket itself failed
    };
    $env->{+SESSION} = $ws;    # from here on, the server must not answer this request itself

    # An earlier connection with this fd number may have left the rest of an
    # interrupted frame: none of it belongs to this client.
    SharedArea::_ws_forget($fd);

    my $response = "HTTP/1.1 101 Switching Protocols\r\n"
        . "Upgrade: websocket\r\n"
        . "Connection: Upgrade\r\n"
        . 'Sec-WebSocket-Accept: ' . accept_key($key) . "\r\n"
        . (defined $origin && length $origin ? "Sec-WebSocket-Origin: $origin\r\n" : '')
        . (defined $proto && length $proto ? "Sec-WebSocket-Protocol: $proto\r\n" : '')
        . "\r\n";
    if (!_write_all($ws, $response, $CONTROL_TIMEOUT)) {
        if ($!{EPIPE} || $!{ECONNRESET} || $!{ENOTCONN}) {
            _end_connection($ws, 'PEER_CLOSED', PEER_CLOSED);
        } else {
            _end_connection($ws, 'CONNECTION_FAILED', "the connection failed ($!)");
        }
        $STATUS = $ws->{status};
        Carp::croak("$F: cannot write the 101 response: $ws->{closed}");
    }
    return 1;
}

=head1 EVENT LOOPS

On an event-loop server (Twiggy, Feersum: C<psgi.nonblocking>) one process
serves every connection, so an app must not block in C<websocket_recv> or a
waiting send. There, C<SharedArea::WebSocket-E<gt>accept> answers the
upgrade and returns a session object whose sends never wait, and the app
returns at once; L<SharedArea::Notify> calls back when an area is updated.
The session lives until C<close> (or until the object is dropped).

    # app.psgi for Twiggy or Feersum: one process, every viewer
    use SharedArea;
    use SharedArea::Notify;
    use Plack::Builder;

    my $id = SharedArea::init('name=frames');    # attach the producer's area
    my %viewers;                                 # fd -> session

    # after each update, the frame to every viewer that is not lagging (the
    # watch lasts while its guard lives: `our`, not a lexical of this file)
    our $watch = SharedArea::Notify->anyevent($id, sub {
        my $frame = SharedArea::info($id)->{used} || SharedArea::info($id)->{size};
        for my $ws (values %viewers) {
            next if $ws->queued > $frame;    # a lagging viewer gets a later frame
            eval { $ws->send_binary_from_sharedarea($id, 0) };   # a failure ends it
        }
    });

    my $app = sub {
        my $ws = SharedArea::WebSocket->accept;
        my $fd = $ws->fd;
        $viewers{$fd} = $ws;
        $ws->on_end(sub { delete $viewers{$fd} });    # however it ends
        return $ws->response;
    };
    builder { enable 'SharedArea', max_message => 4096; $app };

=head2 SharedArea::WebSocket->accept([$key[, $origin[, $proto]]])

Like C<uwsgi::websocket_handshake> (same arguments, checks and errors),
for an event-loop server; returns the session. It also watches the socket
(through AnyEvent, which Twiggy and Feersum run on): messages from the
client are taken as they come (at most C<max_message> bytes each, and a
bounded amount of work per wake-up), pings answered, the keep-alive policy
applied, and when the client leaves or the connection fails the session
ends by itself. Dies, writing nothing, on a server that is not an event
loop (use C<websocket_handshake> and a loop there).

=head2 $ws->response

What the app returns to the server for this request (the middleware
chooses what keeps the server from writing into the stream).

=head2 $ws->send($text), $ws->send_binary($bytes), $ws->send_from_sharedarea($id, $pos[, $len]), $ws->send_binary_from_sharedarea($id, $pos[, $len])

Send one frame, as the C<uwsgi::> functions of the same names do, but never
wait: what the socket does not take at once is copied and queued behind
what is already queued, and goes out as the socket drains (the session
watches it). Return the bytes queued in user space after the call (0: all
with the kernel). The queue has no bound: look at C<queued> first. Die when
the session has ended (C<$STATUS> says why).

=head2 $ws->queued

Bytes on their way to the client: those queued here plus those in the
kernel's send queue (C<SIOCOUTQ>). Skip a frame for a client while this is
more than about a frame, and it gets the latest one when it catches up.

=head2 $ws->on_message($cb), $ws->on_end($cb)

C<$cb-E<gt>($ws, $message)> for each message from the client;
C<$cb-E<gt>($ws, $why)> once when the session ends, however it ends. A
callback that dies is reported (a warning, on the server's log) and the
session goes on (C<on_message>) or ends anyway (C<on_end>).

=head2 $ws->close([$code])

Ends the session for the app (C<on_end> is called, sends die from now on)
and starts the closing handshake (RFC 6455, 7.1.1): a close frame (default
code 1000; a code an endpoint may not send, such as 1005 or 999, dies and
changes nothing) goes out behind the frames already queued, whole and in order;
then the client's messages are read and discarded until its close frame (or
the end of its stream), and then the socket is shut down and closed under
the server. A client that never answers is dropped after C<linger> seconds
(the middleware's option, 2 by default), and so is one that does not read
what was queued for it; a reset or a failing socket ends it at once.
Idempotent.

When the client closes first, its close frame is answered with its own
code (after what was queued for it), and then the connection is closed
(the server closes first, as RFC 6455 asks), within the same C<linger>
bound. A session whose connection failed (a frame cut off, no pong) or whose
client went away without a close frame is closed at once.

None of this waits in the loop: watchers and a timer do it, under C<eval>,
so a session always ends within C<linger> seconds of its close, whatever the
client, the socket or the app's callbacks do. A server that counts its
connections (Twiggy's graceful stop) is given the request's end once the
connection is closed.

=head2 SharedArea::WebSocket::lingering()

How many event-loop connections of this process are still in their closing
handshake (each for at most its C<linger>).

=head2 $ws->fd, $ws->closed

The socket's descriptor; why the session ended (undef while it is open).

=cut

sub accept {
    my ($class, @args) = @_;
    my $F = 'SharedArea::WebSocket->accept';
    my $env = _env($F);
    Carp::croak("$F: this server is not an event loop (psgi.nonblocking is false): call"
        . " uwsgi::websocket_handshake and loop in the app instead")
        unless $env->{'psgi.nonblocking'};
    require AnyEvent;
    uwsgi::websocket_handshake(@args);
    my $ws = bless $env->{+SESSION}, 'SharedArea::WebSocket::Session';
    $ws->{detached} = 1;
    $ws->{io}->blocking(0) if $ws->{io}->can('blocking');
    Scalar::Util::weaken(my $weak = $ws);
    $ws->{read_watcher} = AnyEvent->io(fh => $ws->{io}, poll => 'r', cb => sub { $weak->_readable if $weak });
    if ($ws->{ping_interval} && $ws->{ping_interval} > 0) {
        my $every = $ws->{ping_interval} < $ws->{pong_timeout} ? $ws->{ping_interval} : $ws->{pong_timeout};
        $every = 1 if $every > 1;
        $ws->{timer} = AnyEvent->timer(after => $every, interval => $every, cb => sub { $weak->_tick if $weak });
    }
    return $ws;
}

=head2 uwsgi::websocket_send($message)

Sends C<$message> as one text frame (opcode 1). A character string is sent
as its UTF-8 bytes. Returns the number of payload bytes sent. Dies when the
connection is closed or fails (so a send loop ends when the browser goes
away), and before the handshake.

=cut

sub websocket_send { return _send_message('websocket_send', 1, @_) }

=head2 uwsgi::websocket_send_binary($message)

Sends C<$message> as one binary frame (opcode 2): the string's internal
bytes, as uWSGI sends them, so a character string (UTF8 flag on) goes out as
its UTF-8 encoding, wide characters included (see
L<SharedArea/"Character strings">). Returns the number of payload bytes
sent; dies like C<websocket_send>.

=cut

sub websocket_send_binary { return _send_message('websocket_send_binary', 2, @_) }

=head2 uwsgi::websocket_send_from_sharedarea($id, $pos[, $len])

Sends bytes of area C<$id> from C<$pos> as one text frame. C<$len> absent or
0 means to the end of the area, or to its C<used> mark when the area honours
it (L<SharedArea/set_used>). The range is checked like a read: a range past
the end, a bad id or a bad number dies and sends nothing. The bytes leave
from shared memory without a user-space copy, and a slow or stalled client
never holds the area's lock. Returns the number of payload bytes sent.

=cut

sub websocket_send_from_sharedarea { return _send_area('websocket_send_from_sharedarea', 1, @_) }

=head2 uwsgi::websocket_send_binary_from_sharedarea($id, $pos[, $len])

The same as C<websocket_send_from_sharedarea> with a binary frame (opcode 2).

=cut

sub websocket_send_binary_from_sharedarea {
    return _send_area('websocket_send_binary_from_sharedarea', 2, @_);
}

=head2 uwsgi::websocket_recv()

Waits for and returns the next whole message from the client (bytes):
unmasks it, joins continuation fragments, answers pings with pongs and skips
pongs. Dies with C<websocket_recv: the peer closed the connection> when the
client sends a close frame (after answering it) or closes the socket, and
dies when the connection fails or the client breaks the protocol (after
sending close 1002). A text message, or a close frame's reason, that is not
valid UTF-8 (RFC 3629: no surrogates, nothing past U+10FFFF, no overlong
forms) is answered with close 1007, and the call dies saying so. While it
waits, the keep-alive policy pings a silent client and gives up on one that
does not answer (L</Failures>). A message longer than the limit (16 MiB unless
C<enable 'SharedArea', max_message =E<gt> $bytes>) is refused from its
announced length, before it is read: close 1009 is sent and the call dies.

=cut

sub websocket_recv {
    my $F = 'websocket_recv';
    Carp::croak("$F: usage: uwsgi::$F()") if @_;
    my $ws = _session($F);
    while (1) {
        my $msg = _next_message($ws, $F);
        return $$msg if $msg;
        _fill($ws, $F, -1);
    }
}

=head2 uwsgi::websocket_recv_nb()

Like C<websocket_recv>, but never waits: reads what the socket already holds
into the connection's buffer and returns the next whole message, or undef
when no whole message is waiting yet (a partial one stays buffered for the
next call). Dies as C<websocket_recv> does. Each call reads from the socket
at most once (64 KiB, or what the frame being read still needs), so
C<1 while defined uwsgi::websocket_recv_nb()> ends even while a client
floods pings; a loop that should also bound the messages it takes per turn
counts them. It also runs the keep-alive policy (a ping when the client has
been silent, the end when it answers none), so a loop that sends and calls
C<websocket_recv_nb> ends when its client goes quiet.

=cut

sub websocket_recv_nb {
    my $F = 'websocket_recv_nb';
    Carp::croak("$F: usage: uwsgi::$F()") if @_;
    my $ws = _session($F);
    my $msg = _next_message($ws, $F);
    return $$msg if $msg;
    _keepalive($ws, $F);
    # One read at most: a client that floods (pings, say) cannot keep a
    # `1 while defined websocket_recv_nb()` loop from ending.
    return undef unless _fill($ws, $F, 0);
    $msg = _next_message($ws, $F);
    return $msg ? $$msg : undef;
}

=head2 uwsgi::connection_fd()

The file descriptor of the current request's client socket (the server's
C<psgix.io>). On Feersum, asking for it hands the connection over to the app,
as reading C<psgix.io> does.

=cut

sub connection_fd {
    my $F = 'connection_fd';
    Carp::croak("$F: usage: uwsgi::$F()") if @_;
    my $env = _env($F);
    return $env->{+SESSION}{fd} if $env->{+SESSION};
    Carp::croak("$F: this PSGI server gives no psgix.io (the client's socket)")
        unless exists $env->{'psgix.io'};
    my $io = $env->{'psgix.io'};
    my $fd = defined $io ? eval { fileno $io } : undef;
    Carp::croak("$F: the server's psgix.io is not an open handle") unless defined $fd && $fd >= 0;
    return $fd;
}

=head2 SharedArea::WebSocket::accept_key($key)

The C<Sec-WebSocket-Accept> value for a C<Sec-WebSocket-Key>: the base64
SHA-1 of the key and RFC 6455's GUID.

=cut

sub accept_key {
    my ($key) = @_;
    Carp::croak('accept_key: usage: SharedArea::WebSocket::accept_key($key)') unless @_ == 1 && defined $key;
    return MIME::Base64::encode_base64(Digest::SHA::sha1($key . GUID), '');
}

# ---------------------------------------------------------------------------
# The current request and session

sub _env {
    my ($F) = @_;
    return $ENV if ref $ENV eq 'HASH';
    Carp::croak("$F: no current PSGI request: wrap the app in Plack::Middleware::SharedArea"
        . " (enable 'SharedArea' in a builder)");
}

sub _session {
    my ($F) = @_;
    my $ws = _env($F)->{+SESSION}
        or Carp::croak("$F: no WebSocket on this request: call uwsgi::websocket_handshake first");
    _die_closed($ws, $F) if defined $ws->{closed};
    return $ws;
}

# Records why the request cannot be upgraded (the middleware turns an escaped
# croak into that response) and croaks.
sub _refuse {
    my ($env, $status, $msg, $headers) = @_;
    $env->{+REFUSED} = [ $status, $headers || [], $msg ];
    Carp::croak($msg);
}

sub _has_token {
    my ($value, $token) = @_;
    return 0 unless defined $value;
    return scalar grep { lc($_) eq $token } map { (my $t = $_) =~ s/^\s+|\s+$//g; $t } split /,/, $value;
}

sub _printable {
    my ($s) = @_;
    $s = substr($s, 0, 60) . '...' if length $s > 63;
    $s =~ s/([^\x20-\x7e])/sprintf(ord $1 > 255 ? '\\x{%x}' : '\\x%02x', ord $1)/ge;
    return $s;
}

# ---------------------------------------------------------------------------
# Sending

sub _send_message {
    my ($F, $opcode, @args) = @_;
    Carp::croak("$F: usage: uwsgi::$F(\$message)") unless @args == 1;
    my $ws = _session($F);
    Carp::croak("$F: the message is undef") unless defined $args[0];
    # An object's overloaded string, as a plain string. The frame carries the
    # string's internal bytes, as uWSGI's do: a character string (UTF8 flag
    # on) goes out as its UTF-8 encoding, in text and binary messages alike.
    my $msg = "$args[0]";
    return _guarded_send($ws, $F, sub { SharedArea::_ws_send($F, $ws->{fd}, $opcode, $msg) });
}

sub _send_area {
    my ($F, $opcode, @args) = @_;
    Carp::croak("$F: usage: uwsgi::$F(\$id, \$pos[, \$len])") unless @args == 2 || @args == 3;
    my $ws = _session($F);
    return _guarded_send($ws, $F, sub { SharedArea::_ws_send_from_area($F, $ws->{fd}, $opcode, @args) });
}

# Runs one XS send; a failure that means the connection is gone closes the
# session (no close frame will be tried), and the XS croak goes on up as is.
# An error of a signal handler that ran during the send goes on up untouched.
sub _guarded_send {
    my ($ws, $F, $send) = @_;
    $STATUS = 0;
    my $n = eval { $send->() };
    return $n if defined $n;
    my $err = $@;
    my $st = $STATUS;
    die $err unless _ours($err, $F);    # a %SIG handler died
    if ($st == _status_of('PEER_CLOSED')) {
        _end_connection($ws, 'PEER_CLOSED', PEER_CLOSED);
    } elsif ($st == _status_of('CONNECTION_FAILED')) {
        _end_connection($ws, 'CONNECTION_FAILED', "the connection failed (" . $err->_cause . ")");
    } elsif (_socket_dead($ws)) {
        _end_connection($ws, 'PEER_CLOSED', PEER_CLOSED);
    }
    $STATUS = $ws->{status} || $st;
    # Report it at the app's line, not at this file's.
    die $err->_as($F, Carp::shortmess("$F: " . $err->_cause));
}

# Whether ERR is the failure of the XS call made as F (a SharedArea::Error
# naming it), not something else that died meanwhile (a %SIG handler).
sub _ours {
    my ($err, $F) = @_;
    return ref $err && Scalar::Util::blessed($err) && $err->isa('SharedArea::Error') && $err->function eq $F;
}

# Ends the connection for good: no frame may follow (a failed send or pong may
# have cut one off), so no close frame is tried; the socket is shut down both
# ways, so the client sees the end and our reads stop.
sub _end_connection {
    my ($ws, $status, $why) = @_;
    $ws->{closed} = $why unless defined $ws->{closed};
    $ws->{status} = _status_of($status) unless $ws->{status};
    $ws->{broken} = 1;
    shutdown($ws->{io}, SHUT_RDWR) if $status eq 'CONNECTION_FAILED';
    return;
}

# Dies for a call on a session that can carry no more frames, setting $STATUS.
sub _die_closed {
    my ($ws, $F) = @_;
    $STATUS = $ws->{status} || 0;
    Carp::croak("$F: $ws->{closed}");
}

# Before a control frame: the rest of a data frame that a dying signal
# handler interrupted goes first (waiting for the socket like a send does).
# False (the session closed) when the connection failed meanwhile.
sub _flush_pending {
    my ($ws) = @_;
    my $F = 'SharedArea::WebSocket';
    $STATUS = 0;
    return 1 if eval { SharedArea::_ws_flush($F, $ws->{fd}); 1 };
    my $err = $@;
    die $err unless _ours($err, $F);    # a %SIG handler died
    $err = $err->_cause;
    if ($STATUS == _status_of('PEER_CLOSED')) {
        _end_connection($ws, 'PEER_CLOSED', PEER_CLOSED);
    } else {
        _end_connection($ws, 'CONNECTION_FAILED', "the connection failed ($err)");
    }
    return 0;
}

sub _socket_dead {
    my ($ws) = @_;
    my $got = SharedArea::_ws_poll($ws->{fd}, POLLOUT, 0);
    return ($got > 0 && ($got & (POLLERR | POLLHUP))) ? 1 : 0;
}

# Writes all of $data within $timeout seconds; true on success, false (with
# $! set) on failure or timeout. Never raises SIGPIPE.
sub _write_all {
    my ($ws, $data, $timeout) = @_;
    my $deadline = Time::HiRes::time() + $timeout;
    my $off = 0;
    my $len = length $data;
    while ($off < $len) {
        my $n = send($ws->{io}, $off ? substr($data, $off) : $data, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (defined $n) {
            $off += $n;
            next;
        }
        return 0 unless $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
        my $left = $deadline - Time::HiRes::time();
        if ($left <= 0) {
            $! = POSIX::ETIMEDOUT();
            return 0;
        }
        SharedArea::_ws_poll($ws->{fd}, POLLOUT, int($left * 1000) + 1);
    }
    return 1;
}

sub _control_frame {
    my ($opcode, $payload) = @_;
    return pack('CC', 0x80 | $opcode, length $payload) . $payload;
}

# A pong, or our close frame; best effort, bounded.
sub _send_control {
    my ($ws, $opcode, $payload, $timeout) = @_;
    return 0 if $ws->{broken} || $ws->{close_sent};
    return _queue_control($ws, $opcode, $payload) if $ws->{detached};
    return 0 unless _flush_pending($ws);
    $ws->{close_sent} = 1 if $opcode == 0x8;
    return 1 if _write_all($ws, _control_frame($opcode, $payload), $timeout);
    my $what = $opcode == 0x9 ? 'ping' : $opcode == 0xA ? 'pong' : 'close frame';
    if ($!{EPIPE} || $!{ECONNRESET} || $!{ENOTCONN}) {
        _end_connection($ws, 'PEER_CLOSED', PEER_CLOSED);
    } else {
        _end_connection($ws, 'CONNECTION_FAILED', "the connection failed (writing a $what: $!)");
    }
    return 0;
}

# An event-loop session's control frame: queued behind what is already on its
# way (never waiting in the loop; the frames stay whole and in order).
sub _queue_control {
    my ($ws, $opcode, $payload) = @_;
    $ws->{close_sent} = 1 if $opcode == 0x8;
    my $F = 'SharedArea::WebSocket';
    $STATUS = 0;
    my $q = eval { SharedArea::_ws_send_nb($F, $ws->{fd}, $opcode, $payload) };
    if (defined $q) {
        $ws->_queued_now($q);
        return 1;
    }
    (my $err = $@) =~ s/^\Q$F\E: //;
    $err =~ s/ at \S+ line \d+\.?\n\z//;
    if ($STATUS == _status_of('PEER_CLOSED')) {
        _end_connection($ws, 'PEER_CLOSED', PEER_CLOSED);
    } else {
        my $what = $opcode == 0x9 ? 'ping' : $opcode == 0xA ? 'pong' : 'close frame';
        _end_connection($ws, 'CONNECTION_FAILED', "the connection failed (queueing a $what: $err)");
    }
    return 0;
}

sub _send_close {
    my ($ws, $code, $timeout) = @_;
    return _send_control($ws, 0x8, pack('n', $code), defined $timeout ? $timeout : $CONTROL_TIMEOUT);
}

# ---------------------------------------------------------------------------
# Receiving

# Reads more bytes into the session's buffer. $timeout_ms -1 waits as long as
# it takes (pinging a silent client and giving up on one that does not answer:
# see _keepalive), 0 only takes what is there. Returns the count read (0:
# nothing waiting); dies on end of stream or a failed connection.
sub _fill {
    my ($ws, $F, $timeout_ms) = @_;
    while (1) {
        my $wait = $timeout_ms;
        if ($timeout_ms < 0) {
            my $due = _keepalive($ws, $F);
            $wait = defined $due ? int($due * 1000) + 1 : -1;
        }
        my $r = SharedArea::_ws_poll($ws->{fd}, POLLIN, $wait);
        if ($r < 0) {
            next if $! == EINTR && $timeout_ms < 0;    # %SIG handlers ran; wait on
            return 0 if $! == EINTR;
            _connection_failed($ws, $F, "poll: $!");
        }
        if ($r == 0) {
            next if $timeout_ms < 0;    # a keep-alive step is due
            return 0;
        }
        my $want = $ws->{need} > 65536 ? $ws->{need} : 65536;
        $want = 8 << 20 if $want > 8 << 20;
        my $n = sysread($ws->{io}, $ws->{rbuf}, $want, length $ws->{rbuf});
        if (!defined $n) {
            next if ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR) && $timeout_ms < 0;
            return 0 if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            if ($!{ECONNRESET} || $!{EPIPE}) {
                _end_connection($ws, 'PEER_CLOSED', PEER_CLOSED);
                _die_closed($ws, $F);
            }
            _connection_failed($ws, $F, "read: $!");
        }
        if ($n == 0) {
            # nothing more to read; a close frame is pointless
            _end_connection($ws, 'PEER_CLOSED', PEER_CLOSED);
            _die_closed($ws, $F);
        }
        return $n;
    }
}

# The keep-alive policy: after `ping_interval` seconds without a whole frame
# from the client, send a ping; when no whole frame (its pong, or anything
# else) arrives within `pong_timeout` seconds of it, the connection has
# failed. A silent client and one that trickles bytes without ever finishing
# a frame both end that way. Returns the seconds until the next step (undef:
# the policy is off); dies when the connection failed.
sub _keepalive {
    my ($ws, $F) = @_;
    my $interval = $ws->{ping_interval};
    return undef unless $interval && $interval > 0;
    my $now = Time::HiRes::time();
    if (defined $ws->{ping_sent}) {
        my $left = $ws->{ping_sent} + $ws->{pong_timeout} - $now;
        return $left if $left > 0;
        _end_connection($ws, 'CONNECTION_FAILED',
            "the connection failed (the client answered no ping within $ws->{pong_timeout} s)");
        _die_closed($ws, $F);
    }
    my $left = $ws->{heard} + $interval - $now;
    return $left if $left > 0;
    $ws->{ping_sent} = $now;
    _die_closed($ws, $F)
        unless _send_control($ws, 0x9, pack('N', int $now), $ws->{pong_timeout}) || !$ws->{broken};
    return $ws->{pong_timeout};
}

sub _connection_failed {
    my ($ws, $F, $why) = @_;
    _end_connection($ws, 'CONNECTION_FAILED', "the connection failed ($why)");
    _die_closed($ws, $F);
}

sub _protocol_error {
    my ($ws, $F, $why) = @_;
    _send_close($ws, 1002);
    $ws->{closed} = "the connection was closed after a protocol error from the peer ($why)";
    Carp::croak("$F: protocol error from the peer: $why (closed with 1002)");
}

sub _too_big {
    my ($ws, $F, $bytes) = @_;
    _send_close($ws, 1009);
    $ws->{closed} = "the connection was closed after a message over the limit";
    $ws->{frag} = undef;
    $ws->{rbuf} = '';
    Carp::croak("$F: a message of $bytes bytes is over the limit of $ws->{max_message} bytes"
        . " (enable 'SharedArea', max_message => ...); closed with 1009");
}

# Parses whole frames from the buffer. Returns a reference to the next whole
# message, or undef when more bytes are needed ($ws->{need} says how many).
sub _next_message {
    my ($ws, $F) = @_;
    while (1) {
        my $have = length $ws->{rbuf};
        if ($have < 2) {
            $ws->{need} = 2 - $have;
            return undef;
        }
        my ($b0, $b1) = unpack 'CC', $ws->{rbuf};
        my ($fin, $rsv, $op, $masked, $len) = ($b0 & 0x80, $b0 & 0x70, $b0 & 0x0f, $b1 & 0x80, $b1 & 0x7f);
        my $hlen = 2;
        if ($len == 126) {
            $hlen = 4;
            if ($have < $hlen) { $ws->{need} = $hlen - $have; return undef }
            $len = unpack 'n', substr($ws->{rbuf}, 2, 2);
        } elsif ($len == 127) {
            $hlen = 10;
            if ($have < $hlen) { $ws->{need} = $hlen - $have; return undef }
            my ($hi, $lo) = unpack 'NN', substr($ws->{rbuf}, 2, 8);
            _protocol_error($ws, $F, 'a 64-bit frame length with its top bit set') if $hi & 0x80000000;
            $len = $hi * 4294967296 + $lo;
        }
        _protocol_error($ws, $F, sprintf('reserved bits 0x%02x set (no extension was agreed)', $rsv))
            if $rsv;
        _protocol_error($ws, $F, 'an unmasked frame (a client must mask every frame)') unless $masked;
        $hlen += 4;
        if ($op >= 0x8) {
            _protocol_error($ws, $F, sprintf('unknown control opcode 0x%x', $op)) if $op > 0xA;
            _protocol_error($ws, $F, 'a fragmented control frame') unless $fin;
            _protocol_error($ws, $F, "a control frame of $len bytes (at most 125)") if $len > 125;
        } else {
            _protocol_error($ws, $F, sprintf('unknown data opcode 0x%x', $op)) if $op > 0x2;
            _protocol_error($ws, $F, 'a continuation frame outside a fragmented message')
                if $op == 0 && !defined $ws->{frag};
            _protocol_error($ws, $F, 'a new message before the fragmented one ended')
                if $op != 0 && defined $ws->{frag};
            my $total = ($op == 0 ? length $ws->{frag} : 0) + $len;
            _too_big($ws, $F, $total) if $total > $ws->{max_message};
        }
        if ($have < $hlen + $len) {
            $ws->{need} = $hlen + $len - $have;
            return undef;
        }
        my $mask = substr($ws->{rbuf}, $hlen - 4, 4);
        my $payload = substr($ws->{rbuf}, $hlen, $len);
        substr($ws->{rbuf}, 0, $hlen + $len, '');
        _unmask(\$payload, $mask);
        $ws->{need} = 2;
        $ws->{heard} = Time::HiRes::time();    # the client is alive (keep-alive)
        $ws->{ping_sent} = undef;

        if ($op == 0x9) {               # ping: answer, read on; a failed pong ends it all
            _die_closed($ws, $F) if !_send_control($ws, 0xA, $payload, $CONTROL_TIMEOUT) && $ws->{broken};
            next;
        }
        next if $op == 0xA;             # pong: nothing to do
        if ($op == 0x8) {               # close: answer, then report it
            my $code = 1000;    # echo the peer's code, or 1002 for a malformed one
            my $why = PEER_CLOSED;
            if (length $payload >= 2) {
                my $got = unpack 'n', $payload;
                $code = _valid_close_code($got) ? $got : 1002;
                if (!_valid_utf8(substr($payload, 2))) {
                    $code = 1007;
                    $why = PEER_CLOSED . ' (its close reason is not valid UTF-8: answered 1007)';
                }
            } elsif (length $payload == 1) {
                $code = 1002;
            }
            _send_close($ws, $code);
            $ws->{close_received} = 1;
            _end_connection($ws, 'PEER_CLOSED', $why);
            _die_closed($ws, $F);
        }
        if ($op == 0) {
            $ws->{frag} .= $payload;
            next unless $fin;
            my $msg = $ws->{frag};
            $ws->{frag} = undef;
            _not_utf8($ws, $F) if $ws->{frag_op} == 1 && !_valid_utf8($msg);
            return \$msg;
        }
        if ($fin) {
            _not_utf8($ws, $F) if $op == 1 && !_valid_utf8($payload);
            return \$payload;
        }
        $ws->{frag} = $payload;
        $ws->{frag_op} = $op;
    }
}

# RFC 6455 8.1: a text message (or close reason) must be valid UTF-8; strict:
# no surrogates, nothing above U+10FFFF, no overlong forms.
# Noncharacters (U+FFFE, U+FFFF...) are valid UTF-8. utf8::decode refuses
# malformed and overlong forms; what perl's own extension lets through
# (surrogates, beyond U+10FFFF) is refused after.
sub _valid_utf8 {
    my ($bytes) = @_;
    return 1 unless $bytes =~ /[\x80-\xff]/;
    return 0 unless utf8::decode($bytes);
    no warnings 'utf8';
    return $bytes =~ /[\x{D800}-\x{DFFF}\x{110000}-\x{7FFFFFFF}]/ ? 0 : 1;
}

sub _not_utf8 {
    my ($ws, $F) = @_;
    _send_close($ws, 1007);
    $ws->{closed} = 'the connection was closed after a text message that is not valid UTF-8';
    Carp::croak("$F: the peer sent a text message that is not valid UTF-8 (closed with 1007)");
}

# Close codes a peer may send (RFC 6455 7.4 and the IANA registry).
sub _valid_close_code {
    my ($c) = @_;
    return 1 if $c >= 3000 && $c <= 4999;
    return 1 if $c >= 1000 && $c <= 1014 && $c != 1004 && $c != 1005 && $c != 1006;
    return 0;
}

sub _unmask {
    my ($ref, $mask) = @_;
    my $n = length $$ref;
    return unless $n;
    my $m = $mask x (($n >> 2) + 1);
    substr($m, $n) = '';
    $$ref ^= $m;    # string XOR: both operands are byte strings
    return;
}

# ---------------------------------------------------------------------------
# The end of a session (called by the middleware when the app is done)

# Sends a close frame if none was exchanged, shuts our side down, waits (at
# most `linger` seconds) for the peer's close frame or end of stream, then
# closes the socket by putting /dev/null on its descriptor: the server's
# descriptor stays valid (no double close, no reuse of the number by another
# connection) but nothing it writes can reach the client any more, and its
# reads see the end. Waiting for the peer's close keeps frames it was still
# sending from turning into a reset that could destroy our last frames.
sub _end_session {
    my ($ws, $app_failed) = @_;
    return if $ws->{ended}++;
    # The rest of a frame that a dying signal handler interrupted: dropped.
    # The client got part of a frame, so nothing framed can follow (a close
    # frame would read as payload) and there is nothing whole to protect by
    # lingering: only the shutdown.
    my $dropped = SharedArea::_ws_forget($ws->{fd});
    if ($dropped && !$ws->{broken}) {
        shutdown($ws->{io}, SHUT_WR);
        $ws->{broken} = 1;
    }
    if (!$ws->{broken}) {
        my $deadline = Time::HiRes::time() + $ws->{linger};
        _send_close($ws, $app_failed ? 1011 : 1000, $ws->{linger} > 0 ? $ws->{linger} : 0.2)
            unless $ws->{close_sent};
        shutdown($ws->{io}, SHUT_WR);
        _await_peer_close($ws, $deadline) unless $ws->{close_received};
    }
    $ws->{closed} = 'the WebSocket session has ended' unless defined $ws->{closed};
    $ws->{broken} = 1;
    _neutralize_fd($ws);
    return;
}

# Reads and discards frames until the peer's close frame, the end of the
# stream, an error or the deadline. Payloads are skipped, never kept.
sub _await_peer_close {
    my ($ws, $deadline) = @_;
    $ws->{skip} = 0;
    while (1) {
        return 1 if _skip_to_close($ws);
        my $left = $deadline - Time::HiRes::time();
        return 0 if $left <= 0;
        my $r = SharedArea::_ws_poll($ws->{fd}, POLLIN, int($left * 1000) + 1);
        next if $r < 0 && $! == EINTR;
        return 0 if $r <= 0;
        my $n = sysread($ws->{io}, $ws->{rbuf}, 65536, length $ws->{rbuf});
        next if !defined $n && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR);
        return 0 unless $n;    # end of stream or error
    }
}

# Discards the whole frames buffered in $ws->{rbuf} (a frame whose payload is
# still to come is skipped as it arrives: $ws->{skip} bytes) up to the peer's
# close frame. True once a close frame's header is there.
sub _skip_to_close {
    my ($ws) = @_;
    while (1) {
        if ($ws->{skip}) {
            my $n = $ws->{skip} < length $ws->{rbuf} ? $ws->{skip} : length $ws->{rbuf};
            substr($ws->{rbuf}, 0, $n, '');
            $ws->{skip} -= $n;
            return 0 if $ws->{skip};
        }
        my $have = length $ws->{rbuf};
        return 0 if $have < 2;
        my ($b0, $b1) = unpack 'CC', $ws->{rbuf};
        return 1 if ($b0 & 0x0f) == 0x8;
        my $len = $b1 & 0x7f;
        my $hlen = 2 + (($b1 & 0x80) ? 4 : 0);
        if ($len == 126) {
            $hlen += 2;
            return 0 if $have < 4;
            $len = unpack 'n', substr($ws->{rbuf}, 2, 2);
        } elsif ($len == 127) {
            $hlen += 8;
            return 0 if $have < 10;
            my ($hi, $lo) = unpack 'NN', substr($ws->{rbuf}, 2, 8);
            $len = $hi * 4294967296 + $lo;
        }
        return 0 if $have < $hlen;
        substr($ws->{rbuf}, 0, $hlen, '');
        $ws->{skip} = $len;
    }
}

sub lingering { return SharedArea::WebSocket::Closing::lingering() }

sub _neutralize_fd {
    my ($ws) = @_;
    my $null = POSIX::open('/dev/null', POSIX::O_RDWR());
    return unless defined $null;
    if (defined POSIX::dup2($null, $ws->{fd})) {
        fcntl($ws->{io}, F_SETFD, FD_CLOEXEC);    # dup2 cleared it; the server's socket had it
    }
    POSIX::close($null);
    return;
}

package SharedArea::WebSocket::Session;

# The session of SharedArea::WebSocket->accept, for event loops (see EVENT
# LOOPS in the POD above). The same hash as a blocking session's, blessed.

use strict;
use warnings;

sub response {
    my ($ws) = @_;
    return $ws->{response} if $ws->{response};
    # The middleware puts its response here; without it, a streaming response
    # that writes nothing.
    return sub { return };
}

sub fd { return $_[0]{fd} }
sub closed { return $_[0]{closed} }
sub on_message { $_[0]{on_message} = $_[1]; return }
sub on_end { $_[0]{on_end} = $_[1]; return }

sub send { my $ws = shift; return $ws->_send_nb('send', 1, @_) }
sub send_binary { my $ws = shift; return $ws->_send_nb('send_binary', 2, @_) }
sub send_from_sharedarea { my $ws = shift; return $ws->_send_area_nb('send_from_sharedarea', 1, @_) }
sub send_binary_from_sharedarea { my $ws = shift; return $ws->_send_area_nb('send_binary_from_sharedarea', 2, @_) }

sub queued {
    my ($ws) = @_;
    return 0 if $ws->{ended};
    my $q = eval { SharedArea::_ws_queued('queued', $ws->{fd}) };
    return $q if defined $q;
    $ws->_failed_nb('queued', $@);
}

sub _send_nb {
    my ($ws, $F, $opcode, @args) = @_;
    Carp::croak("$F: usage: \$ws->$F(\$message)") unless @args == 1;
    SharedArea::WebSocket::_die_closed($ws, $F) if defined $ws->{closed};
    Carp::croak("$F: the message is undef") unless defined $args[0];
    my $msg = "$args[0]";
    utf8::encode($msg) if utf8::is_utf8($msg);
    $SharedArea::WebSocket::STATUS = 0;
    my $q = eval { SharedArea::_ws_send_nb($F, $ws->{fd}, $opcode, $msg) };
    return $ws->_queued_now($q) if defined $q;
    $ws->_failed_nb($F, $@);
}

sub _send_area_nb {
    my ($ws, $F, $opcode, @args) = @_;
    Carp::croak("$F: usage: \$ws->$F(\$id, \$pos[, \$len])") unless @args == 2 || @args == 3;
    SharedArea::WebSocket::_die_closed($ws, $F) if defined $ws->{closed};
    $SharedArea::WebSocket::STATUS = 0;
    my $q = eval { SharedArea::_ws_send_from_area_nb($F, $ws->{fd}, $opcode, @args) };
    return $ws->_queued_now($q) if defined $q;
    $ws->_failed_nb($F, $@);
}

# Something is queued in user space: watch for the socket to drain.
sub _queued_now {
    my ($ws, $q) = @_;
    if ($q && !$ws->{write_watcher}) {
        Scalar::Util::weaken(my $weak = $ws);
        $ws->{write_watcher} = AnyEvent->io(fh => $ws->{io}, poll => 'w', cb => sub { $weak->_writable if $weak });
    }
    return $q;
}

sub _writable {
    my ($ws) = @_;
    my $left = eval { SharedArea::_ws_flush_nb('flush', $ws->{fd}) };
    if (!defined $left) {
        eval { $ws->_failed_nb('flush', $@) };
        return;
    }
    delete $ws->{write_watcher} unless $left;
    return;
}

# A failed non-blocking call: a connection that ended ends the session (its
# on_end runs); the error goes on up.
sub _failed_nb {
    my ($ws, $F, $err) = @_;
    my $st = $SharedArea::WebSocket::STATUS;
    die $err unless SharedArea::WebSocket::_ours($err, $F);
    if ($st == SharedArea::WebSocket::_status_of('PEER_CLOSED')) {
        SharedArea::WebSocket::_end_connection($ws, 'PEER_CLOSED', SharedArea::WebSocket::PEER_CLOSED);
    } elsif ($st == SharedArea::WebSocket::_status_of('CONNECTION_FAILED')) {
        SharedArea::WebSocket::_end_connection($ws, 'CONNECTION_FAILED', "the connection failed (" . $err->_cause . ")");
    }
    $ws->_finish if defined $ws->{closed};
    $SharedArea::WebSocket::STATUS = $ws->{status} || $st;
    die $err->_as($F, Carp::shortmess("$F: " . $err->_cause));
}

# The socket is readable: take what is there (one read), hand whole messages
# to on_message (at most 16 per wake-up; the rest stay buffered for the next).
sub _readable {
    my ($ws) = @_;
    return if $ws->{ended};
    local $SharedArea::WebSocket::ENV = undef;
    my $more = 0;
    my $ok = eval {
        for (1 .. 16) {
            my $msg = SharedArea::WebSocket::_next_message($ws, 'recv');
            if (!$msg) {
                last if $_ > 1 || !SharedArea::WebSocket::_fill($ws, 'recv', 0);
                $msg = SharedArea::WebSocket::_next_message($ws, 'recv') or last;
            }
            # a callback that dies is reported; the messages after it still come
            eval { $ws->{on_message}->($ws, $$msg); 1 } or warn $@ if $ws->{on_message};
            last if $ws->{ended};
            $more = $_ == 16;
        }
        1;
    };
    if ($ok && $more && !$ws->{ended}) {
        # the rest is buffered, and the socket may not wake us again: later, in turn
        Scalar::Util::weaken(my $weak = $ws);
        AnyEvent::postpone(sub { $weak->_readable if $weak });
    }
    if (!$ok) {
        # the connection ended (or failed); anything else is a bug here: end it too
        (my $err = $@) =~ s/\s+\z//;
        $ws->{closed} = "the session failed ($err)" unless defined $ws->{closed};
        warn "$err\n" unless $ws->{status} || $ws->{close_sent} || $ws->{close_received};
        $ws->_finish;
    }
    return;
}

# The keep-alive policy's clock.
sub _tick {
    my ($ws) = @_;
    return if $ws->{ended};
    eval { SharedArea::WebSocket::_keepalive($ws, 'keepalive'); 1 } or $ws->_finish;
    return;
}

sub close {
    my ($ws, $code) = @_;
    Carp::croak('close: usage: $ws->close([$code])') if @_ > 2;
    Carp::croak("close: '" . SharedArea::WebSocket::_printable("$code") . "' is not a close code an"
        . ' endpoint may send (1000-1003, 1007-1014, 3000-4999)')
        if defined $code && !($code =~ /\A[0-9]{4}\z/ && SharedArea::WebSocket::_valid_close_code($code));
    return if $ws->{ended};
    # Our close frame goes behind what is queued (frames stay whole and in
    # order); then the connection lingers for the client's close frame.
    SharedArea::WebSocket::_send_close($ws, defined $code ? $code : 1000)
        unless $ws->{broken} || $ws->{close_sent};
    $ws->{closed} = 'the WebSocket session has ended' unless defined $ws->{closed};
    $ws->_finish;
    return;
}

# The end of the session for the app: no more watchers, on_end told. The
# connection itself is handed to SharedArea::WebSocket::Closing, which ends the
# closing handshake (RFC 6455 7.1.1, 5.5.1) within `linger` seconds and then
# closes the socket under the server.
sub _finish {
    my ($ws) = @_;
    return if $ws->{ended}++;
    delete @$ws{qw(read_watcher write_watcher timer)};
    $ws->{closed} = 'the WebSocket session has ended' unless defined $ws->{closed};
    my $failed = $ws->{status} && $ws->{status} == SharedArea::WebSocket::_status_of('CONNECTION_FAILED');
    my $wait = $failed                                ? ''         # nothing whole can follow
             : $ws->{close_received}                  ? 'drain'    # our answer goes out, then we close
             : $ws->{close_sent} && !$ws->{broken}    ? 'peer'     # we wait for the client's close frame
             :                                          '';
    $ws->{closing} = SharedArea::WebSocket::Closing->start($ws, $wait);
    $ws->{broken} = 1;
    my $end = delete $ws->{on_end};
    eval { $end->($ws, $ws->{closed}); 1 } or warn $@ if $end;
    return;
}

# Runs $cb once the connection is closed (at once if it is): the server's own
# end of the request (Twiggy's response), which must not write into a
# connection that is still closing.
sub _when_gone {
    my ($ws, $cb) = @_;
    if (!$ws->{ended}) {
        $ws->{server_end} = $cb;
    } elsif ($ws->{closing} && !$ws->{closing}{done}) {
        $ws->{closing}{server_end} = $cb;
    } else {
        $cb->();
    }
    return;
}

sub DESTROY {
    my ($ws) = @_;
    return if ${^GLOBAL_PHASE} eq 'DESTRUCT' || !$ws->{detached} || $ws->{ended};
    local ($@, $!, $?);
    eval { $ws->close; 1 };
    return;
}

package SharedArea::WebSocket::Closing;

# The end of an event-loop session's connection, after the app's part is
# over: the rest of what is queued goes out; when we sent the close frame,
# frames from the client are read and discarded until its close frame (or the
# end of its stream); then the socket is shut down and closed under the
# server. A timer bounds all of it by the session's `linger`, so a client that
# never answers, or never reads, cannot keep the descriptor. Every callback
# runs under eval: whatever fails, the connection is closed.

use strict;
use warnings;
use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use Socket qw(MSG_DONTWAIT SHUT_WR);

my %LINGERING;    # fd -> the connections closing (they hold themselves here)

# Starts closing $ws's connection. $wait: 'drain' (send what is queued, then
# close), 'peer' (also wait for the client's close frame), '' (close at once).
sub start {
    my ($class, $ws, $wait) = @_;
    my $c = bless {
        io         => $ws->{io},
        fd         => $ws->{fd},
        rbuf       => $ws->{rbuf},
        skip       => 0,
        wait       => $wait,
        server_end => delete $ws->{server_end},
        peer_done  => 0,        # the client's close frame, or its end of stream, arrived
        done       => 0,
    }, $class;
    $c->{rbuf} = '' unless defined $c->{rbuf};
    $c->{skip} = 0;
    $LINGERING{ $c->{fd} } = $c;
    my $linger = $ws->{linger};
    if (!$wait || !($linger > 0)) {
        $c->_step(1);
        return $c;
    }
    Scalar::Util::weaken(my $weak = $c);
    $c->{timer} = AnyEvent->timer(after => $linger, cb => sub { $weak->_done if $weak });
    $c->_step(0);
    return $c;
}

sub lingering { return scalar keys %LINGERING }

# Flushes, reads, and either closes or waits for the socket (watchers). With
# $last, closes whatever happens (no linger).
sub _step {
    my ($c, $last) = @_;
    return if $c->{done};
    my $ok = eval {
        my $left = SharedArea::_ws_flush_nb('flush', $c->{fd});
        if ($c->{wait} eq 'peer' && !$c->{peer_done}) {
            # what the session had buffered first, then one read
            if (SharedArea::WebSocket::_skip_to_close($c)) {
                $c->{peer_done} = 'close frame';
            } else {
                my $n = recv($c->{io}, my $buf, 65536, MSG_DONTWAIT);
                if (!defined $n) {
                    die "read: $!\n" unless $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                } elsif (!length $buf) {
                    $c->{peer_done} = 'end of stream';
                } else {
                    $c->{rbuf} .= $buf;
                    $c->{peer_done} = 'close frame' if SharedArea::WebSocket::_skip_to_close($c);
                }
            }
        }
        my $waiting_peer = $c->{wait} eq 'peer' && !$c->{peer_done};
        if ($last || (!$left && !$waiting_peer)) {
            $c->_done;
            return 1;
        }
        Scalar::Util::weaken(my $weak = $c);
        if ($left) {
            $c->{write_watcher} ||= AnyEvent->io(fh => $c->{io}, poll => 'w', cb => sub { $weak->_step(0) if $weak });
        } else {
            delete $c->{write_watcher};
        }
        if ($waiting_peer) {
            $c->{read_watcher} ||= AnyEvent->io(fh => $c->{io}, poll => 'r', cb => sub { $weak->_step(0) if $weak });
        } else {
            delete $c->{read_watcher};
        }
        1;
    };
    $c->_done unless $ok;    # the socket failed (or the client went away): close now
    return;
}

# Closes the connection: what is still queued is dropped, the bytes the
# client sent are read away (a socket closed with unread bytes sends a reset,
# which could destroy our last frames in flight), our side is shut down (the
# FIN follows our close frame), and the descriptor is closed under the server
# (it gets /dev/null: see _neutralize_fd). Then the server's own end runs.
sub _done {
    my ($c) = @_;
    return if $c->{done}++;
    delete @$c{qw(timer read_watcher write_watcher)};
    delete $LINGERING{ $c->{fd} } if $LINGERING{ $c->{fd} } && $LINGERING{ $c->{fd} } == $c;
    eval {
        SharedArea::_ws_forget($c->{fd});
        for (1 .. 16) {
            my $n = recv($c->{io}, my $buf, 65536, MSG_DONTWAIT);
            last unless defined $n && length $buf;
        }
        shutdown($c->{io}, SHUT_WR);
        SharedArea::WebSocket::_neutralize_fd($c);
        1;
    } or warn $@;
    my $server_end = delete $c->{server_end};
    eval { $server_end->(); 1 } or warn $@ if $server_end;
    return;
}

package SharedArea::WebSocket;

1;

__END__

=head1 SEE ALSO

L<Plack::Middleware::SharedArea>, L<SharedArea>, RFC 6455.

=cut
