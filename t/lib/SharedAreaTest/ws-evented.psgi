# The event-loop app of t/82-websocket-closing-handshake.t: sessions of
# SharedArea::WebSocket->accept under Twiggy or Feersum. Under /l30 the
# middleware's linger is 30 s, elsewhere 1 s.
#
#   /echo      "pid N", then each text message back; "close CODE" makes the
#              server close with CODE; "big N" sends N bytes (binary: queued
#              while the client does not read); "die" makes on_message die;
#              on_end dies
#   /app-dies  the app dies right after accept (the middleware closes: 1011)
#   /http      "ok PID";  /lingering  connections still closing in this process
use strict;
use warnings;
use SharedArea;
use Plack::Builder;

my %sessions;    # fd -> session: the app keeps them, as the demo does

my $echo = sub {
    my ($env) = @_;
    my $ws = SharedArea::WebSocket->accept;
    my $fd = $ws->fd;
    $sessions{$fd} = $ws;
    $ws->on_message(sub {
        my ($ws, $msg) = @_;
        if ($msg =~ /^close (\d+)$/) {
            $ws->close($1);
        } elsif ($msg =~ /^big (\d+)$/) {
            $ws->send_binary('b' x $1);
        } elsif ($msg eq 'die') {
            die "on_message died on purpose\n";
        } else {
            $ws->send($msg);
        }
    });
    $ws->on_end(sub {
        delete $sessions{$fd};
        die "on_end died on purpose\n";
    });
    $ws->send("pid $$");
    return $ws->response;
};

my $app = sub {
    my ($env) = @_;
    my $path = $env->{PATH_INFO};
    return $echo->($env) if $path eq '/echo';
    if ($path eq '/app-dies') {
        my $ws = SharedArea::WebSocket->accept;
        $ws->send("pid $$");
        die "the app died on purpose after accept\n";
    }
    return [ 200, [ 'Content-Type' => 'text/plain' ], ["ok $$"] ] if $path eq '/http';
    return [ 200, [ 'Content-Type' => 'text/plain' ], [ SharedArea::WebSocket::lingering() ] ]
        if $path eq '/lingering';
    return [ 404, [ 'Content-Type' => 'text/plain' ], ["no route $path"] ];
};

builder {
    mount '/l30' => builder { enable 'SharedArea', linger => 30; $app };
    mount '/' => builder { enable 'SharedArea', linger => 1; $app };
};
