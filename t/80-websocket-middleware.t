#!/usr/bin/perl
# Plack::Middleware::SharedArea on its own: options, the current request for
# the uwsgi:: functions (also in streaming callbacks), the responses it gives
# for refused handshakes and servers without psgix.io, what it hands the
# server after a session, errors, and staying out of the way inside uWSGI.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use SharedAreaTest::Proc qw(needs);
BEGIN { needs(modules => [qw(Plack Plack::Test HTTP::Request::Common)]) }
use HTTP::Request::Common qw(GET);
use IO::Handle;
use Plack::Test;
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC MSG_DONTWAIT);
use SharedAreaTest::Proc qw(require_blib run_perl);
use SharedAreaTest::WebSocket qw(client_frame parse_frames);

require_blib();
require SharedArea;
require Plack::Middleware::SharedArea;
$SIG{ALRM} = sub { die "test exceeded its time limit\n" };
alarm 60;

my $KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
my @UPGRADE = (Upgrade => 'websocket', Connection => 'Upgrade', 'Sec-WebSocket-Version' => 13,
    'Sec-WebSocket-Key' => $KEY);

sub pending {
    my ($s) = @_;
    my ($all, $buf) = ('', '');
    while (defined recv($s, $buf, 1 << 20, MSG_DONTWAIT) && length $buf) { $all .= $buf }
    return $all;
}

sub wrap {
    my ($app, @opt) = @_;
    return Plack::Middleware::SharedArea->wrap($app, @opt);
}

sub socket_env {
    my (%over) = @_;
    socketpair(my $c, my $s, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
    $c->autoflush(1);
    my $errors = '';
    open my $err_fh, '>', \$errors or die;
    my $env = {
        REQUEST_METHOD => 'GET', SERVER_PROTOCOL => 'HTTP/1.1', HTTP_UPGRADE => 'websocket',
        HTTP_CONNECTION => 'Upgrade', HTTP_SEC_WEBSOCKET_VERSION => 13, HTTP_SEC_WEBSOCKET_KEY => $KEY,
        'psgix.io' => $s, 'psgi.streaming' => 1, 'psgi.errors' => $err_fh, PATH_INFO => '/', %over,
    };
    return ($c, $env, \$errors);
}

# --- options ------------------------------------------------------------------
for my $bad ([ max_message => 'abc' ], [ max_message => 0 ], [ max_message => 1.5 ], [ linger => '-1' ], [ linger => 'x' ]) {
    my $err = do { local $@; eval { wrap(sub { [ 200, [], [] ] }, @$bad); 1 } ? '' : $@ };
    like($err, qr/^Plack::Middleware::SharedArea: $bad->[0] must be/, "option $bad->[0] => '$bad->[1]' is refused");
}
ok(eval { wrap(sub { [ 200, [], [] ] }, max_message => 1024, linger => 0.5); 1 },
    'good options are accepted');

# --- refusals through a server without psgix.io (Plack::Test's mock) ------------
my $ws_app = wrap(
    sub {
        my $env = shift;
        return [ 200, [ 'Content-Type' => 'text/plain' ], ['plain'] ] if $env->{PATH_INFO} eq '/plain';
        if ($env->{PATH_INFO} eq '/caught') {
            return eval { uwsgi::websocket_handshake(); 1 } ? [ 500, [], ['?'] ] : [ 418, [], ["caught: $@"] ];
        }
        if ($env->{PATH_INFO} eq '/other-error') {
            eval { uwsgi::websocket_handshake() };
            die "something else went wrong\n";
        }
        uwsgi::websocket_handshake();
        return [ 200, [], ['not reached'] ];
    });
test_psgi $ws_app, sub {
    my ($cb) = @_;
    my $res = $cb->(GET '/ws', @UPGRADE);
    is($res->code, 500, 'a server without psgix.io: 500');
    like($res->content, qr/^websocket_handshake: this PSGI server gives no psgix\.io/, '... saying so');
    $res = $cb->(GET '/ws');
    is($res->code, 400, 'not an upgrade request: 400');
    like($res->content, qr/^websocket_handshake: not a WebSocket upgrade request: no 'Upgrade: websocket' header\n\z/,
        '... with the message, without a file and line');
    is($res->header('Content-Type'), 'text/plain; charset=utf-8', '... as plain text');
    $res = $cb->(GET '/ws', @UPGRADE, 'Sec-WebSocket-Version' => 7);
    is($res->code, 426, 'version 7: 426 Upgrade Required');
    is($res->header('Sec-WebSocket-Version'), 13, '... naming version 13');
    $res = $cb->(GET '/caught');
    is($res->code, 418, 'an app that catches the refusal answers for itself');
    $res = $cb->(GET '/plain');
    is($res->content, 'plain', 'plain requests pass through');
    $res = $cb->(GET '/other-error');
    is($res->code, 500, 'another error after a caught refusal is not turned into the refusal');
    unlike($res->content, qr/Upgrade: websocket/, '... (its own 500, not the 400)');
};
{
    my $app = wrap(sub { die "plain failure\n" });
    my ($c, $env) = socket_env();
    is(do { local $@; eval { $app->($env) }; $@ }, "plain failure\n", 'an error before any handshake propagates unchanged');
}

# --- the current request ----------------------------------------------------------
{
    my @seen;
    my $app = wrap(
        sub {
            my $env = shift;
            push @seen, $SharedArea::WebSocket::ENV == $env ? 'app' : 'app-wrong';
            return sub {
                my $respond = shift;
                push @seen, $SharedArea::WebSocket::ENV == $env ? 'callback' : 'callback-wrong';
                $respond->([ 200, [], ['streamed'] ]);
            };
        });
    my ($c, $env) = socket_env(HTTP_UPGRADE => undef);
    my $res = $app->($env);
    is($SharedArea::WebSocket::ENV, undef, 'the current request is unset after the app returns');
    my @responses;
    $res->(sub { push @responses, $_[0] });
    is_deeply(\@seen, [ 'app', 'callback' ], 'the current request is set in the app and in its streaming callback');
    is_deeply(\@responses, [ [ 200, [], ['streamed'] ] ], 'a streaming response without a handshake reaches the server');
    is($SharedArea::WebSocket::ENV, undef, '... and the current request is unset afterwards');
    like(do { local $@; eval { uwsgi::websocket_send('x') }; $@ }, qr/^websocket_send: no current PSGI request/,
        'outside a request the functions die clearly');
}

# --- after a session: what the server is handed --------------------------------------
{
    my $app = wrap(
        sub {
            uwsgi::websocket_handshake();
            uwsgi::websocket_send('one');
            return [ 200, [ 'Content-Length' => 5 ], ['STRAY'] ];
        }, linger => 0);
    my ($c, $env) = socket_env();
    my $res = $app->($env);
    is(ref $res, 'CODE', 'after a session (generic server): a streaming response...');
    my $called = 0;
    $res->(sub { $called++ });
    is($called, 0, '... that never calls the responder');
    my ($frames, $rest) = parse_frames((split /\r\n\r\n/, pending($c), 2)[1]);
    is_deeply([ map { [ $_->{op}, $_->{payload} ] } @$frames ], [ [ 1, 'one' ], [ 8, "\x03\xe8" ] ],
        'the client got the frame and close 1000');
    is($rest, '', '... and nothing else');
    is(readlink('/proc/self/fd/' . fileno($env->{'psgix.io'})), '/dev/null', 'the socket was closed under the server');

    ($c, $env) = socket_env('psgi.streaming' => 0);
    $res = $app->($env);
    is_deeply($res, [ 101, [], [] ], 'a server without streaming gets an empty 101 (written into the closed socket)');
}
{
    my $app = wrap(
        sub {
            return sub {
                my $respond = shift;
                uwsgi::websocket_handshake();
                uwsgi::websocket_send('in callback');
                my $w = $respond->([ 200, [] ]);
                $w->write('STRAY');
                $w->close;
                $respond->([ 200, [], ['STRAY'] ]);
            };
        }, linger => 0);
    my ($c, $env) = socket_env();
    my $res = $app->($env);
    my @responses;
    $res->(sub { push @responses, $_[0]; return Plack::Util::inline_object(write => sub { push @responses, 'write' }, close => sub { }) });
    is_deeply(\@responses, [], 'a handshake in a streaming callback: the app\'s responder calls are swallowed');
    my $got = pending($c);
    like($got, qr/^HTTP\/1\.1 101 Switching Protocols\r\n/, 'the client got the 101');
    my ($frames, $rest) = parse_frames((split /\r\n\r\n/, $got, 2)[1]);
    is_deeply([ map { $_->{payload} } @$frames ], [ 'in callback', "\x03\xe8" ], '... the frame and the close');
    is($rest, '', '... and nothing else');
}
{
    my $app = wrap(sub { return sub { uwsgi::websocket_handshake() } });
    my ($c, $env) = socket_env(HTTP_SEC_WEBSOCKET_VERSION => 99);
    my @responses;
    $app->($env)->(sub { push @responses, $_[0] });
    is($responses[0][0], 426, 'a refusal in a streaming callback is answered through the responder');
}
{
    # errors after the handshake: the app's own are reported, the end of the connection is not
    my $app = wrap(
        sub {
            my $env = shift;
            uwsgi::websocket_handshake();
            die "app bug\n" if $env->{PATH_INFO} eq '/bug';
            uwsgi::websocket_recv();
        }, linger => 0);
    my ($c, $env, $errors) = socket_env(PATH_INFO => '/bug');
    $app->($env);
    like($$errors, qr/^Plack::Middleware::SharedArea: the app died during a WebSocket session: app bug$/m,
        "the app's own error after the handshake goes to psgi.errors");
    my ($frames) = parse_frames((split /\r\n\r\n/, pending($c), 2)[1]);
    is(unpack('H*', $frames->[-1]{payload}), '03f3', '... and the client gets close 1011');

    ($c, $env, $errors) = socket_env(PATH_INFO => '/recv');
    my $pid = fork // die;
    if (!$pid) { sleep 1; syswrite $c, client_frame(8, pack 'n', 1000); POSIX::_exit(0) }
    $app->($env);
    waitpid $pid, 0;
    is($$errors, '', 'the peer closing (recv dies) is the normal end: nothing is logged');
}

# --- inside a uWSGI host: its functions stay, the middleware stays out of the way ------
{
    my ($st, $out, $err) = run_perl(30, <<'PERL');
use strict; use warnings;
sub uwsgi::websocket_handshake { 'host' }
sub uwsgi::websocket_send { 'host send' }
require SharedArea;
require Plack::Middleware::SharedArea;
print 'handshake=', uwsgi::websocket_handshake(), "\n";
print 'send=', uwsgi::websocket_send('x'), "\n";
print 'recv=', (\&uwsgi::websocket_recv == \&SharedArea::WebSocket::websocket_recv ? 'ours' : 'other'), "\n";
my $app = Plack::Middleware::SharedArea->wrap(sub { [ 200, [], [ defined $SharedArea::WebSocket::ENV ? 'set' : 'unset' ] ] });
my $env = {};
my $res = $app->($env);
print "env=$res->[2][0]\n";
print 'options=', (exists $env->{'sharedarea.websocket.options'} ? 'set' : 'unset'), "\n";
PERL
    is($out, "handshake=host\nsend=host send\nrecv=ours\nenv=unset\noptions=unset\n",
        "inside a host whose uwsgi:: functions exist: those stay, the missing ones are ours, the middleware passes through")
        or diag($err);
}

done_testing();
