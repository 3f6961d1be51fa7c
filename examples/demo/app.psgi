# The live demo's web side: streams the frames that examples/producer.c writes
# into a named SharedArea to every browser that opens the page.
#
#   starman --listen 127.0.0.1:5000 --workers 4 examples/demo/app.psgi
#
# (scripts/demo builds everything and starts the producer and Starman.)
#
#   GET /        the page (index.html next to this file): a canvas and live counters
#   GET /ws      WebSocket: one binary message per frame, straight out of the area,
#                and a JSON text message with the shared counters a few times a second
#   GET /stats   the shared counters as JSON
#
# The frame area is attached by name, without a size (the producer created it),
# in every worker: a name= area works whether or not Starman preloads the app.
# The counters live in a second named area, "<name>-stats", that every worker
# creates or attaches and increments with uwsgi::sharedarea_inc64.
#
# Environment: SHAREDAREA_DEMO_NAME (default "sharedarea-demo") names the
# producer's area.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
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
    REQUESTS      => 0,     # HTTP requests served, WebSocket upgrades included
    VIEWERS       => 8,     # WebSocket viewers connected now
    VIEWERS_TOTAL => 16,    # WebSocket viewers so far
    FRAMES_SENT   => 24,    # frames sent, all viewers together
    BYTES_SENT    => 32,    # frame bytes sent, all viewers together
};
use constant STATS_EVERY => 0.25;    # seconds between counter messages on a WebSocket

my $page = do {
    my $file = File::Spec->catfile($here, 'index.html');
    open my $fh, '<:raw', $file or die "app.psgi: cannot read $file: $!";
    local $/;
    <$fh>;
};

sub stats_json {
    my %s = (
        requests      => uwsgi::sharedarea_read64($stats, REQUESTS),
        viewers       => uwsgi::sharedarea_read64($stats, VIEWERS),
        viewers_total => uwsgi::sharedarea_read64($stats, VIEWERS_TOTAL),
        frames_sent   => uwsgi::sharedarea_read64($stats, FRAMES_SENT),
        bytes_sent    => uwsgi::sharedarea_read64($stats, BYTES_SENT),
        pid           => $$,
    );
    # hand-made JSON: the values are integers, the one string is the area name
    (my $area = $name) =~ s/(["\\])/\\$1/g;
    return '{"area":"' . $area . '",'
        . join(',', map {"\"$_\":$s{$_}"} sort keys %s) . '}';
}

# Decrements "viewers" however the stream ends (error, closed browser, worker exit).
package ViewerGuard {
    sub new { my ($class, $id, $pos) = @_; uwsgi::sharedarea_inc64($id, $pos, 1); bless [$id, $pos], $class }
    sub DESTROY { my $self = shift; eval { uwsgi::sharedarea_dec64(@$self, 1) }; }
}

# One viewer: wait for each new frame and send it, until the browser goes away
# (a send to a closed connection dies, which ends the loop).
sub stream {
    my ($env) = @_;
    uwsgi::websocket_handshake();
    uwsgi::sharedarea_inc64($stats, VIEWERS_TOTAL, 1);
    my $viewer = ViewerGuard->new($stats, VIEWERS);

    # the frame's length from its header (fixed while the producer runs)
    my $frame_len = uwsgi::sharedarea_read32($frames, 32)
        + uwsgi::sharedarea_read16($frames, 4) * uwsgi::sharedarea_read16($frames, 6);
    my $stats_due = 0;
    my $sent = 0;
    eval {
        uwsgi::websocket_send(stats_json());
        while (1) {
            # wakes on the producer's next update; times out after 1 s when
            # the producer is paused, so the counters still flow and a closed
            # browser is still noticed
            if (eval { uwsgi::sharedarea_wait($frames, 50, 1); 1 }) {
                uwsgi::websocket_send_binary_from_sharedarea($frames, 0);    # to `used`
                uwsgi::sharedarea_inc64($stats, FRAMES_SENT, 1);
                uwsgi::sharedarea_inc64($stats, BYTES_SENT, $frame_len);
                $sent++;
            }
            elsif ($@ !~ /timed out/i) {
                die $@;
            }
            1 while defined uwsgi::websocket_recv_nb();    # the page sends nothing; drain pings
            my $now = Time::HiRes::time();
            if ($now >= $stats_due) {
                uwsgi::websocket_send(stats_json());
                $stats_due = $now + STATS_EVERY;
            }
        }
    };
    (my $why = $@ || 'loop ended') =~ s/\s+\z//;
    $env->{'psgi.errors'}->print("app.psgi: viewer on worker $$ left after $sent frames ($why)\n");
    undef $viewer;
    return [200, ['Content-Type' => 'text/plain'], ['']];
}

my $app = sub {
    my ($env) = @_;
    uwsgi::sharedarea_inc64($stats, REQUESTS, 1);
    my $path = $env->{PATH_INFO} // '/';
    if ($path eq '/' || $path eq '/index.html') {
        return [200, ['Content-Type' => 'text/html; charset=utf-8', 'Cache-Control' => 'no-store'], [$page]];
    }
    if ($path eq '/ws') {
        return stream($env);
    }
    if ($path eq '/stats') {
        return [200, ['Content-Type' => 'application/json', 'Cache-Control' => 'no-store'], [stats_json()]];
    }
    return [404, ['Content-Type' => 'text/plain'], ["not found: $path\n"]];
};

builder {
    enable 'SharedArea';
    $app;
};
