package Plack::Middleware::SharedArea;

# Makes the current request known to the uwsgi::websocket_* functions and,
# after a WebSocket session, hands the server a response that puts nothing
# into the (already closed) stream, so that the server goes on serving.
# Releases any area lock the app still holds when its request ends.

use strict;
use warnings;

use parent 'Plack::Middleware';

use Carp ();
use Plack::Util ();
use Plack::Util::Accessor qw(max_message linger ping_interval pong_timeout send_timeout);
use SharedArea ();
use SharedArea::WebSocket ();

our $VERSION = '1.0.0';

=head1 NAME

Plack::Middleware::SharedArea - uWSGI's WebSocket functions on any PSGI server

=head1 SYNOPSIS

    use Plack::Builder;
    use SharedArea;

    builder {
        enable 'SharedArea', max_message => 1 << 20, ping_interval => 30, pong_timeout => 10;
        sub {
            my $env = shift;
            return [ 200, [], [ 'plain HTTP' ] ] unless $env->{HTTP_UPGRADE};
            uwsgi::websocket_handshake();
            while (1) {
                my $msg = uwsgi::websocket_recv();    # dies when the client leaves
                uwsgi::websocket_send("echo: $msg");
            }
        };
    };

=head1 DESCRIPTION

While the wrapped app runs (and while the streaming callback it may return
runs), C<$SharedArea::WebSocket::ENV> is the request's env, so that the
C<uwsgi::websocket_*> functions of L<SharedArea::WebSocket> act on this
request and its socket (C<psgix.io>).

After C<uwsgi::websocket_handshake> the connection is the app's. When the app
returns, or dies, the middleware ends the session: a close frame (1000, or
1011 when the app died of its own error) unless one was exchanged already,
a shutdown of the socket, a wait of at most C<linger> seconds for the client
to close its side, and then the socket is closed under the server (its
descriptor now reads end-of-file and swallows writes). Whatever the app
returned is ignored, and the server gets a response that writes nothing
into the stream, chosen per server:

=over 4

=item Starman, Starlet, HTTP::Server::PSGI (plackup's default), and others

a streaming response whose callback never calls the responder: nothing is
written; the server's keep-alive loop sees end-of-file and takes the next
connection at once.

=item Feersum

the same, as Feersum's own rules for C<psgix.io> require (the responder must
not be called; Feersum keeps its descriptor until the env is freed).

=item Twiggy

a complete C<101> response with no headers or body, whose bytes go nowhere
(the socket is already closed): Twiggy counts every connection until its
response is written, and a streaming response never answered would keep a
graceful stop (SIGQUIT) waiting forever.

=back

On an event-loop server (Twiggy, Feersum), a session opened with
C<SharedArea::WebSocket-E<gt>accept> outlives the app call: the middleware
hands the server a response that writes nothing while the session lasts
(Feersum: one never answered; Twiggy and other event loops: one answered
with the empty C<101>, into the closed socket, when the session ends, so a
graceful stop still counts it), and the session ends itself when the client
leaves or the connection fails, or when the app calls C<close>, with the
closing handshake bounded by C<linger>. An app that
dies after C<accept> has the session closed with 1011 and the error reported
on C<psgi.errors>.

A C<websocket_handshake> error that escapes the app (not an upgrade request,
a server without C<psgix.io>) becomes the response: 400 (426 for a wrong
C<Sec-WebSocket-Version>) or 500, with the message as a plain-text body.
Other errors before the handshake propagate as usual. An error after the
handshake that is not the end of the connection (a bug in the app) is
reported on C<psgi.errors>.

A lock on an area that the app still holds when its request ends - a C<die>
between C<sharedarea_wlock> and C<sharedarea_unlock>, a forgotten C<unlock> -
is released (every nested level, C<SharedArea::unlock_all>), with a warning
that names the request, the area and the kind of lock; otherwise it would
block every other worker for as long as this one lives.  (Locking with
C<SharedArea::wlock_guard> never leaves one.)  For a streaming response this
happens when its callback returns.

Inside a real uWSGI host, whose own C<uwsgi::websocket_*> functions stay in
place, the middleware does nothing.

=head1 OPTIONS

=over 4

=item max_message

The largest incoming message (bytes, after joining fragments) that
C<websocket_recv> accepts; a bigger one is refused from its announced
length (close 1009) before any of it is buffered. Default 16 MiB.

=item linger

Seconds to wait, at the end of a session, for the client to close its side
after our close frame (so that nothing it sends turns into a reset that
could destroy our last frames). Default 2. 0 closes at once. For the
event-loop sessions of C<SharedArea::WebSocket-E<gt>accept> it bounds the
whole closing handshake, done by watchers without blocking the loop: the
wait for the client's close frame after ours, or, when the client closed
first, for our queued frames and the answer to its close to leave (see
L<SharedArea::WebSocket/"$ws-E<gt>close([$code])">).

=item ping_interval, pong_timeout

The keep-alive policy, on by default, so that every session ends even when
its client goes silent: after C<ping_interval> seconds (default 30) without
a whole frame from the client, C<websocket_recv> (or C<websocket_recv_nb>)
sends a ping; when no whole frame (the pong, or anything else) arrives
within C<pong_timeout> seconds (default 10) after it, the connection has
failed: the socket is shut down and the call dies with
C<the connection failed (the client answered no ping within 10 s)>. A
client that trickles bytes without finishing a frame ends the same way. So
a worker blocked in C<websocket_recv> is free again within
C<ping_interval + pong_timeout> seconds of the client's last frame.
C<ping_interval =E<gt> 0> turns the policy off. (uWSGI's
C<--websocket-ping-freq> and C<--websocket-pong-tolerance>.)

=item send_timeout

Seconds a send may wait for a client that accepts nothing (default 60) before
it fails; for the whole process. A send that gives up after part of its frame
left breaks the connection for good (see L<SharedArea::WebSocket/Failures>).

=back

=head1 METHODS

=head2 prepare_app

Checks the options (called once by L<Plack::Middleware>).

=cut

sub prepare_app {
    my ($self) = @_;
    for my $opt (qw(max_message linger ping_interval pong_timeout send_timeout)) {
        my $v = $self->$opt;
        next unless defined $v;
        Carp::croak("Plack::Middleware::SharedArea: $opt must be a number, not '$v'")
            unless $v =~ /^\s*(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$/;
    }
    my $max = $self->max_message;
    Carp::croak("Plack::Middleware::SharedArea: max_message must be a whole number of bytes >= 1, not '$max'")
        if defined $max && ($max != int($max) || $max < 1);
    for my $opt (qw(pong_timeout send_timeout)) {
        my $v = $self->$opt;
        Carp::croak("Plack::Middleware::SharedArea: $opt must be more than 0 seconds, not '$v'")
            if defined $v && $v <= 0;
    }
    SharedArea::_ws_set_stall_limit('Plack::Middleware::SharedArea', 0 + $self->send_timeout)
        if defined $self->send_timeout;
    return;
}

=head2 call($env)

Runs the app for one request (see L</DESCRIPTION>).

=cut

sub call {
    my ($self, $env) = @_;
    # Inside uWSGI its own functions are in place: stay out of the way.
    return $self->app->($env)
        unless \&uwsgi::websocket_handshake == \&SharedArea::WebSocket::websocket_handshake;

    $env->{ SharedArea::WebSocket::OPTIONS() } = {
        max_message => defined $self->max_message ? 0 + $self->max_message : $SharedArea::WebSocket::MAX_MESSAGE,
        linger      => defined $self->linger ? 0 + $self->linger : $SharedArea::WebSocket::LINGER,
        ping_interval => defined $self->ping_interval ? 0 + $self->ping_interval : $SharedArea::WebSocket::PING_INTERVAL,
        pong_timeout  => defined $self->pong_timeout ? 0 + $self->pong_timeout : $SharedArea::WebSocket::PONG_TIMEOUT,
    };

    my ($res, $ok, $err);
    {
        local $SharedArea::WebSocket::ENV = $env;
        $ok = eval { $res = $self->app->($env); 1 };
        $err = $@;
    }
    # The app is done with the request unless it goes on in a streaming callback.
    _release_locks($env) if !$ok || ref $res ne 'CODE' || $env->{ SharedArea::WebSocket::SESSION() };
    if (my $ws = $env->{ SharedArea::WebSocket::SESSION() }) {
        return _detached_response($env, $ws, $ok ? undef : $err) if $ws->{detached};
        _end($env, $ok ? undef : $err);
        return _nothing_response($env);
    }
    return _refusal($env) if !$ok && _refused_by($env, $err);
    die $err unless $ok;
    return $res unless ref $res eq 'CODE';

    # A streaming response: the app may do its WebSocket work in the callback.
    return sub {
        my ($respond, @rest) = @_;
        my $guarded = sub {
            # After the handshake the server must not answer: swallow it.
            return _null_writer() if $env->{ SharedArea::WebSocket::SESSION() };
            $env->{ SharedArea::WebSocket::STARTED() } = 1;
            return $respond->(@_);
        };
        my ($ok, $err);
        {
            local $SharedArea::WebSocket::ENV = $env;
            $ok = eval { $res->($guarded, @rest); 1 };
            $err = $@;
        }
        _release_locks($env);
        if (my $ws = $env->{ SharedArea::WebSocket::SESSION() }) {
            if ($ws->{detached}) {
                my $later = _detached_response($env, $ws, $ok ? undef : $err);
                $later->($respond) if ref $later eq 'CODE';
                return;
            }
            _end($env, $ok ? undef : $err);
            my $final = _nothing_response($env);
            $respond->($final) if ref $final eq 'ARRAY';
            return;
        }
        if (!$ok && _refused_by($env, $err) && !$env->{ SharedArea::WebSocket::STARTED() }) {
            $respond->(_refusal($env));
            return;
        }
        die $err unless $ok;
        return;
    };
}

# A lock the app still holds when its request ends (a die between wlock and
# unlock, a forgotten unlock) would block every other worker for as long as
# this one lives: release it, with a warning that names the area.
sub _release_locks {
    my ($env) = @_;
    my $n = SharedArea::count();
    for my $id (0 .. $n - 1) {
        my $held = eval { SharedArea::held($id) } or next;
        my $levels = eval { SharedArea::unlock_all($id) };
        my $what = $held == 2 ? 'write' : 'read';
        my $req = join ' ', grep { defined } $env->{REQUEST_METHOD}, $env->{REQUEST_URI};
        warn "Plack::Middleware::SharedArea: the request ($req) ended holding the $what lock of area $id;"
            . (defined $levels ? " released it ($levels level" . ($levels == 1 ? '' : 's') . ')'
                               : " releasing it failed: $@")
            . "\n";
    }
    return;
}

# Ends the WebSocket session after the app; reports an app error that is not
# the connection ending.
sub _end {
    my ($env, $err) = @_;
    my $ws = $env->{ SharedArea::WebSocket::SESSION() };
    my $app_failed = defined $err && !defined $ws->{closed};
    if ($app_failed) {
        my $errors = $env->{'psgi.errors'};
        my $msg = "Plack::Middleware::SharedArea: the app died during a WebSocket session: $err";
        $msg .= "\n" unless $msg =~ /\n\z/;
        eval { $errors->print($msg); 1 } or print STDERR $msg;
    }
    SharedArea::WebSocket::_end_session($ws, $app_failed);
    return;
}

sub _server {
    my ($env) = @_;
    return 'feersum' if $INC{'Feersum.pm'} && exists $env->{'psgix.output.guard'};
    return 'twiggy' if $INC{'Twiggy/Server.pm'} && $env->{'psgi.nonblocking'};
    return 'other';
}

# The response for a session that goes on after the app returned
# (SharedArea::WebSocket->accept, on an event-loop server): nothing is written
# while it lasts; when it ends, a server that counts its connections until
# their response is written (Twiggy) gets the empty 101 into the closed socket.
sub _detached_response {
    my ($env, $ws, $err) = @_;
    if (defined $err) {    # the app died after accepting: end the session now
        my $msg = "Plack::Middleware::SharedArea: the app died during a WebSocket session: $err";
        $msg .= "\n" unless $msg =~ /\n\z/;
        eval { $env->{'psgi.errors'}->print($msg); 1 } or print STDERR $msg;
        $ws->close(1011);
    }
    my $server = _server($env);
    return sub { return } if $server eq 'feersum';
    return sub {
        my ($respond) = @_;
        # once the connection is closed (after the closing handshake's linger)
        $ws->_when_gone(sub { $respond->([ 101, [], [] ]) });
        return;
    };
}

# The response handed to the server once the session is over; the socket is
# closed already, so nothing of it can reach the client either way.
sub _nothing_response {
    my ($env) = @_;
    my $server = _server($env);
    return [ 101, [], [] ] if $server eq 'twiggy' || !$env->{'psgi.streaming'};
    return sub { return };    # never calls the responder: the server writes nothing
}

# True when $err is the handshake's refusal of this request.
sub _refused_by {
    my ($env, $err) = @_;
    my $refused = $env->{ SharedArea::WebSocket::REFUSED() } or return 0;
    return index("$err", $refused->[2]) == 0;
}

sub _refusal {
    my ($env) = @_;
    my ($status, $headers, $msg) = @{ $env->{ SharedArea::WebSocket::REFUSED() } };
    return [ $status, [ 'Content-Type' => 'text/plain; charset=utf-8', @$headers ], [ "$msg\n" ] ];
}

sub _null_writer {
    return Plack::Util::inline_object(write => sub { return }, close => sub { return }, poll_cb => sub { return });
}

1;

__END__

=head1 SEE ALSO

L<SharedArea::WebSocket>, L<SharedArea>.

=cut
