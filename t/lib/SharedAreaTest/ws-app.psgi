# The PSGI app the t/80-websocket-*.t tests run under every server.
# Area 0 is the named area the test created (WSTEST_SPEC); its layout is in
# SharedAreaTest::WebSocket. Each route says what the client must see.
use strict;
use warnings;
use SharedArea $ENV{WSTEST_SPEC};
use Plack::Builder;

use constant {
    STALL_COUNTER => 8 * 1024 * 1024 - 8,     # int64: sends completed by /stall
    LOOP_COUNTER  => 8 * 1024 * 1024 - 16,    # int64: sends completed by /loop
    STALL_FRAME   => 4 * 1024 * 1024,
};

sub _query {
    my ($env) = @_;
    my %q;
    for my $pair (split /&/, defined $env->{QUERY_STRING} ? $env->{QUERY_STRING} : '') {
        my ($k, $v) = split /=/, $pair, 2;
        $v = '' unless defined $v;
        $v =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
        $q{$k} = $v;
    }
    return \%q;
}

my $stray = [ 200, [ 'Content-Type' => 'text/plain', 'Content-Length' => 19 ], ['STRAY HTTP RESPONSE'] ];

my %routes = (
    # plain HTTP: who serves
    '/http' => sub { [ 200, [ 'Content-Type' => 'text/plain' ], ["ok $$"] ] },
    '/info' => sub {
        my @servers = grep { $INC{$_} }
            qw(Starman/Server.pm Starlet/Server.pm Feersum.pm Twiggy/Server.pm HTTP/Server/PSGI.pm);
        [ 200, [ 'Content-Type' => 'text/plain' ], ["pid=$$ servers=@servers"] ];
    },

    # one frame from the area (op=text|bin, pos, optional len), then "sent N";
    # the app's own response must never reach the client
    '/send' => sub {
        my ($env, $q) = @_;
        uwsgi::websocket_handshake();
        my @args = (0, $q->{pos});
        push @args, $q->{len} if exists $q->{len};
        my $n = $q->{op} eq 'text'
            ? uwsgi::websocket_send_from_sharedarea(@args)
            : uwsgi::websocket_send_binary_from_sharedarea(@args);
        uwsgi::websocket_send("sent $n");
        return $stray;
    },

    # sends that must fail: each case "pos:len" (len '-' = absent, id after '@')
    '/range' => sub {
        my ($env, $q) = @_;
        uwsgi::websocket_handshake();
        for my $case (split /,/, $q->{cases}) {
            my ($spec, $id) = split /@/, $case;
            my ($pos, $len) = split /:/, $spec;
            my @args = (defined $id ? $id : 0, $pos);
            push @args, $len unless $len eq '-';
            my $ok = eval { uwsgi::websocket_send_binary_from_sharedarea(@args); 1 };
            my $err = $@;
            $err =~ s/ at \S+ line \d+\.\n\z//;
            uwsgi::websocket_send($ok ? "NO ERROR for $case" : "ERR $err");
        }
        return $stray;
    },

    # websocket_send / websocket_send_binary of several sizes
    '/messages' => sub {
        uwsgi::websocket_handshake();
        uwsgi::websocket_send('hello');
        uwsgi::websocket_send("caf\x{e9} \x{263a}");    # characters: sent as UTF-8
        uwsgi::websocket_send_binary("\x00\x01\xfe\xff");
        uwsgi::websocket_send_binary('');
        uwsgi::websocket_send_binary('b' x $_) for 125, 126, 65535, 65536, 100000;
        my $ok = eval { uwsgi::websocket_send_binary("\x{263a}"); 1 };
        uwsgi::websocket_send($ok ? 'wide binary accepted' : 'wide binary refused');    # accepted: its UTF-8 bytes, as uWSGI
        return $stray;
    },

    # echo every message back as binary; the first frame says who we are
    '/echo' => sub {
        uwsgi::websocket_handshake();
        uwsgi::websocket_send("pid $$");
        while (1) {
            my $msg = uwsgi::websocket_recv();
            uwsgi::websocket_send_binary($msg);
        }
    },

    # the same with websocket_recv_nb: replies "<undefs seen>:<message>"
    '/echo-nb' => sub {
        uwsgi::websocket_handshake();
        uwsgi::websocket_send("pid $$");
        my $undefs = 0;
        while (1) {
            my $msg = uwsgi::websocket_recv_nb();
            if (!defined $msg) {
                $undefs++;
                select undef, undef, undef, 0.005;
                next;
            }
            uwsgi::websocket_send_binary("$undefs:$msg");
            $undefs = 0;
        }
    },

    # the uWSGI idiom: wait for an update, send; ends when the client is gone
    '/loop' => sub {
        uwsgi::websocket_handshake();
        uwsgi::websocket_send("pid $$");
        while (1) {
            uwsgi::sharedarea_wait(0, 50);
            uwsgi::websocket_send_binary_from_sharedarea(0, 0, 64);
            uwsgi::sharedarea_inc64(0, LOOP_COUNTER);
        }
    },

    # big frames as fast as the client takes them; a stalled client stops us
    '/stall' => sub {
        uwsgi::websocket_handshake();
        uwsgi::websocket_send("pid $$");
        while (1) {
            uwsgi::websocket_send_binary_from_sharedarea(0, 0, STALL_FRAME);
            uwsgi::sharedarea_inc64(0, STALL_COUNTER);
        }
    },

    # the app dies of its own error after the handshake
    '/die' => sub {
        uwsgi::websocket_handshake();
        uwsgi::websocket_send("pid $$");
        die "deliberate failure in /die\n";
    },

    # explicit key, origin and protocol
    '/proto' => sub {
        my ($env) = @_;
        uwsgi::websocket_handshake($env->{HTTP_SEC_WEBSOCKET_KEY}, 'http://origin.example', 'chat');
        uwsgi::websocket_send('proto ok');
        return $stray;
    },

    # a route that only shakes hands (for requests that are not upgrades)
    '/handshake-only' => sub {
        uwsgi::websocket_handshake();
        uwsgi::websocket_send('upgraded');
        return $stray;
    },

    # the handshake inside a streaming response; the responder is then swallowed
    '/stream' => sub {
        return sub {
            my ($respond) = @_;
            uwsgi::websocket_handshake();
            uwsgi::websocket_send("streamed $$");
            my $w = $respond->([ 200, [ 'Content-Type' => 'text/plain' ] ]);
            $w->write('STRAY STREAMED BODY');
            $w->close;
        };
    },
);

my $app = sub {
    my ($env) = @_;
    my $route = $routes{ $env->{PATH_INFO} }
        or return [ 404, [ 'Content-Type' => 'text/plain' ], ["no route $env->{PATH_INFO}"] ];
    return $route->($env, _query($env));
};

builder {
    enable 'SharedArea', max_message => 65536, linger => 2;
    $app;
};
