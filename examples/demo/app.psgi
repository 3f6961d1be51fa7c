# The live demo's web side: streams the frames that examples/producer.c writes
# into a named SharedArea to every browser that opens the page.
#
#   twiggy --listen 127.0.0.1:5000 examples/demo/app.psgi     (scripts/demo does this)
#
# One Twiggy process serves the page, the counters and every viewer: an
# AnyEvent watcher (SharedArea::Notify) is called after each frame the
# producer writes, and sends it to each viewer with a non-blocking send
# straight out of the area. A viewer whose socket still holds more than about
# a frame is skipped this time, so a slow viewer always gets the latest frame,
# never a queue of old ones. Nothing ever blocks, so the page and /stats answer
# at once however many viewers stream.
#
# The same app also runs on a prefork server (Starman, Starlet): there each
# viewer keeps one worker in the blocking loop of SharedArea::WebSocket's
# synopsis, so it serves as many viewers as there are workers.
#
#   GET /        the page (index.html next to this file): a canvas and live counters
#   GET /ws      WebSocket: one binary message per frame, straight out of the area,
#                and a JSON text message with the shared counters a few times a second
#   GET /stats   the shared counters as JSON
#
# The frame area is attached by name, without a size (the producer created it).
# The counters live in a second named area, "<name>-stats", that every process
# creates or attaches and increments with uwsgi::sharedarea_inc64.
#
# Environment: SHAREDAREA_DEMO_NAME (default "sharedarea-demo") names the
# producer's area.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use Socket qw(SOL_SOCKET SO_SNDBUF);
use Time::HiRes ();

my $here;
BEGIN {
    $here = dirname(File::Spec->rel2abs(__FILE__));
    # run from a source tree: use the built module (perl Makefile.PL && make) if there is one
    my $root = File::Spec->catdir($here, File::Spec->updir, File::Spec->updir);
    unshift @INC, grep { -d } map { File::Spec->catdir($root, 'blib', $_) } qw(arch lib);
}

use Plack::Builder;
use SharedArea;

my $name = $ENV{SHAREDAREA_DEMO_NAME} // 'sharedarea-demo';

# the frame area: created by the producer, attached here by name (no size)
my $frames = eval { SharedArea::init("name=$name") }
    // die "app.psgi: cannot attach the producer's area name=$name: start the producer first "
    . "(target/sharedarea-demo-producer -n $name, built from examples/producer.c; scripts/demo does both): $@";

# the counters: 8-byte signed integers in their own small area
my $stats = SharedArea::init("name=$name-stats,size=4096");
use constant {
    REQUESTS       => 0,     # HTTP requests served, WebSocket upgrades included
    VIEWERS        => 8,     # WebSocket viewers connected now
    VIEWERS_TOTAL  => 16,    # WebSocket viewers so far
    FRAMES_SENT    => 24,    # frames sent, all viewers together
    BYTES_SENT     => 32,    # frame bytes sent, all viewers together
    FRAMES_SKIPPED => 40,    # frames a lagging viewer did not get (it got a later one)
};
use constant STATS_EVERY => 0.25;    # seconds between counter messages on a WebSocket
use constant MAX_MESSAGE => 4096;    # the page sends nothing; a client may send this much at most

my $page = do {
    my $file = File::Spec->catfile($here, 'index.html');
    open my $fh, '<:raw', $file or die "app.psgi: cannot read $file: $!";
    local $/;
    <$fh>;
};

sub stats_json {
    my %s = (
        requests       => uwsgi::sharedarea_read64($stats, REQUESTS),
        viewers        => uwsgi::sharedarea_read64($stats, VIEWERS),
        viewers_total  => uwsgi::sharedarea_read64($stats, VIEWERS_TOTAL),
        frames_sent    => uwsgi::sharedarea_read64($stats, FRAMES_SENT),
        bytes_sent     => uwsgi::sharedarea_read64($stats, BYTES_SENT),
        frames_skipped => uwsgi::sharedarea_read64($stats, FRAMES_SKIPPED),
        pid            => $$,
    );
    # hand-made JSON: the values are integers, the one string is the area name
    (my $area = $name) =~ s/(["\\])/\\$1/g;
    return '{"area":"' . $area . '",'
        . join(',', map {"\"$_\":$s{$_}"} sort keys %s) . '}';
}

# the frame's length from its header (fixed while the producer runs)
sub frame_len {
    return uwsgi::sharedarea_read32($frames, 32)
        + uwsgi::sharedarea_read16($frames, 4) * uwsgi::sharedarea_read16($frames, 6);
}

# ---------------------------------------------------------------------------
# Event loop (Twiggy, Feersum): one process, every viewer

my %viewers;     # fd -> session (SharedArea::WebSocket->accept)
my $watchers;    # the frame watcher and the counters timer, made with the first viewer

sub send_frame_to_all {
    my $len = frame_len();
    my ($sent, $skipped) = (0, 0);
    for my $ws (values %viewers) {
        # more than about a frame still on its way: this viewer lags; it gets
        # a later frame once it has caught up
        if ($ws->queued > $len) {
            $skipped++;
            next;
        }
        # a failure ends the session (its on_end forgets it)
        $sent++ if eval { $ws->send_binary_from_sharedarea($frames, 0); 1 };    # to `used`
    }
    uwsgi::sharedarea_inc64($stats, FRAMES_SENT, $sent) if $sent;
    uwsgi::sharedarea_inc64($stats, BYTES_SENT, $sent * $len) if $sent;
    uwsgi::sharedarea_inc64($stats, FRAMES_SKIPPED, $skipped) if $skipped;
    return;
}

sub start_watching {
    require AnyEvent;
    require SharedArea::Notify;
    return {
        frames => SharedArea::Notify->anyevent($frames, \&send_frame_to_all),
        stats  => AnyEvent->timer(after => STATS_EVERY, interval => STATS_EVERY, cb => sub {
            my $json = stats_json();
            for my $ws (values %viewers) {
                eval { $ws->send($json) } if $ws->queued < 65536;
            }
        }),
    };
}

sub stream_evented {
    my ($env) = @_;
    my $ws = SharedArea::WebSocket->accept;
    my $fd = $ws->fd;
    # a small send buffer: what the kernel holds for a slow viewer stays about
    # one frame, and `queued` sees the rest
    setsockopt($env->{'psgix.io'}, SOL_SOCKET, SO_SNDBUF, frame_len());
    $viewers{$fd} = $ws;
    uwsgi::sharedarea_inc64($stats, VIEWERS_TOTAL, 1);
    uwsgi::sharedarea_inc64($stats, VIEWERS, 1);
    $watchers ||= start_watching();
    $ws->on_message(sub { });    # the page sends nothing; anything else is read and dropped
    $ws->on_end(sub {
        my (undef, $why) = @_;
        delete $viewers{$fd};
        uwsgi::sharedarea_dec64($stats, VIEWERS, 1);
        $env->{'psgi.errors'}->print("app.psgi: a viewer left ($why)\n");
    });
    eval { $ws->send(stats_json()) };
    return $ws->response;
}

# ---------------------------------------------------------------------------
# Prefork (Starman, Starlet): one worker per viewer, the blocking loop

# Decrements "viewers" however the stream ends (error, closed browser, worker exit).
package ViewerGuard {
    sub new { my ($class, $id, $pos) = @_; uwsgi::sharedarea_inc64($id, $pos, 1); bless [$id, $pos], $class }
    sub DESTROY { my $self = shift; eval { uwsgi::sharedarea_dec64(@$self, 1) }; }
}

sub stream_blocking {
    my ($env) = @_;
    uwsgi::websocket_handshake();
    uwsgi::sharedarea_inc64($stats, VIEWERS_TOTAL, 1);
    my $viewer = ViewerGuard->new($stats, VIEWERS);
    my $len = frame_len();
    my $stats_due = 0;
    eval {
        while (1) {
            # the next frame, or after 1 s without one (the producer paused)
            # go on: the loop still answers pings and notices a closed browser
            if (eval { uwsgi::sharedarea_wait($frames, 0, 1); 1 }) {
                uwsgi::websocket_send_binary_from_sharedarea($frames, 0);    # dies when the browser leaves
                uwsgi::sharedarea_inc64($stats, FRAMES_SENT, 1);
                uwsgi::sharedarea_inc64($stats, BYTES_SENT, $len);
            }
            for (1 .. 16) { last unless defined uwsgi::websocket_recv_nb() }    # dies when the browser leaves
            if (Time::HiRes::time() >= $stats_due) {
                uwsgi::websocket_send(stats_json());
                $stats_due = Time::HiRes::time() + STATS_EVERY;
            }
        }
    };
    (my $why = $@ || 'loop ended') =~ s/\s+\z//;
    $env->{'psgi.errors'}->print("app.psgi: viewer on worker $$ left ($why)\n");
    return [200, [], []];
}

my $app = sub {
    my ($env) = @_;
    uwsgi::sharedarea_inc64($stats, REQUESTS, 1);
    my $path = $env->{PATH_INFO} // '/';
    if ($path eq '/' || $path eq '/index.html') {
        return [200, ['Content-Type' => 'text/html; charset=utf-8', 'Cache-Control' => 'no-store'], [$page]];
    }
    if ($path eq '/ws') {
        return $env->{'psgi.nonblocking'} ? stream_evented($env) : stream_blocking($env);
    }
    if ($path eq '/stats') {
        return [200, ['Content-Type' => 'application/json', 'Cache-Control' => 'no-store'], [stats_json()]];
    }
    return [404, ['Content-Type' => 'text/plain'], ["not found: $path\n"]];
};

builder {
    enable 'SharedArea', max_message => MAX_MESSAGE;
    $app;
};
