#!/usr/bin/perl
# The live demo, end to end, as a newcomer runs it: scripts/demo (producer +
# Twiggy) on a free port, the page opened in headless Chromium through
# chromedriver (W3C WebDriver over HTTP::Tiny + JSON::PP), frames arriving
# and changing on the canvas, the shared counters moving, viewers leaving
# when the browser goes away, and Ctrl-C (SIGINT to the process group)
# leaving no process and no shared-memory object behind.
use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(WNOHANG _exit setsid);
use Test::More;
use Time::HiRes qw(time sleep);

use lib dirname(abs_path(__FILE__)) . '/lib';
use SharedAreaTest::Proc qw(free_port);
use SharedAreaTest::WebDriver;

my $ROOT = abs_path(dirname(abs_path(__FILE__)) . '/..');
my $TMP  = "$ROOT/t/tmp";
make_path($TMP);

if (my $why = SharedAreaTest::WebDriver::unavailable()) {
    plan skip_all => "headless browser test: $why";
}

my $NAME = "sharedarea-demo-t90-$$";
my $LOG  = "$TMP/demo-$$.log";                 # kept when a test fails
my $CDLOG = "$TMP/chromedriver-$$.log";
my $demo_pid;    # scripts/demo, leader of its own process group

sub shm_objects { grep { -e "/dev/shm/$_" } ($NAME, "$NAME-stats") }

sub group_alive { my ($pgid) = @_; return kill(0, -$pgid) ? 1 : 0 }

sub slurp { my ($f) = @_; open my $fh, '<', $f or return ''; local $/; return <$fh> // '' }

sub log_tail { my $c = slurp($LOG); return length $c > 3000 ? '...' . substr($c, -3000) : $c }

# Whatever happens, no demo process and no shared-memory object outlives the test.
sub cleanup {
    if ($demo_pid) {
        kill 'INT', -$demo_pid;
        my $deadline = time + 10;
        sleep 0.1 while group_alive($demo_pid) && time < $deadline && !waitpid($demo_pid, WNOHANG);
        kill 'KILL', -$demo_pid;
        waitpid($demo_pid, 0);
        undef $demo_pid;
    }
    unlink "/dev/shm/$_" for shm_objects();
}
END { my $status = $?; cleanup(); $? = $status }
$SIG{ALRM} = sub { cleanup(); die "t/90-demo-browser.t: exceeded its 300 s limit\n" };
$SIG{INT} = $SIG{TERM} = sub { cleanup(); _exit(1) };
alarm 300;

my $PORT = free_port();
my $URL  = "http://127.0.0.1:$PORT";
my $http = HTTP::Tiny->new(timeout => 5);

sub stats {
    my $r = $http->get("$URL/stats");
    die "GET /stats: $r->{status} $r->{reason}\n" unless $r->{success};
    return JSON::PP::decode_json($r->{content});
}

# ---- start the demo as a user would (scripts/demo), without package installs
unlink $LOG;
$demo_pid = fork // die "fork: $!";
if (!$demo_pid) {
    setsid();
    open STDIN,  '<',  '/dev/null';
    open STDOUT, '>',  $LOG or _exit(97);
    open STDERR, '>&', \*STDOUT or _exit(97);
    chdir '/';    # scripts/demo must work from any directory
    delete $ENV{$_} for grep {/^SHAREDAREA_DEMO_/} keys %ENV;    # the defaults, as a newcomer gets them
    $ENV{PORT}                         = $PORT;
    $ENV{SHAREDAREA_DEMO_NAME}         = $NAME;
    $ENV{SHAREDAREA_DEMO_NO_INSTALL}   = 1;
    exec "$ROOT/scripts/demo" or _exit(98);
}
{
    my $deadline = time + 240;    # builds the library and the module when a test run has not yet
    my $up;
    while (time < $deadline) {
        if (waitpid($demo_pid, WNOHANG) == $demo_pid) {
            undef $demo_pid;
            fail('scripts/demo exited with status ' . ($? >> 8) . ' before serving');
            diag "its output:\n" . log_tail();
            done_testing;
            exit 1;
        }
        last if $up = slurp($LOG) =~ m{open \Q$URL\E/ in a browser};
        sleep 0.2;
    }
    ok($up, "scripts/demo started the producer and Twiggy on $URL within 240 s") or do {
        diag log_tail();
        done_testing;
        exit 1;
    };
}
ok(-e "/dev/shm/$NAME", "the producer created the named area /dev/shm/$NAME");

my $s0 = stats();
is($s0->{area}, $NAME, 'GET /stats names the demo area');
cmp_ok($s0->{requests}, '>=', 1, 'requests served counts the /stats request');
is($s0->{viewers}, 0, 'no viewer before the browser opens the page');

# ---- the page in headless Chromium
my $wd = SharedAreaTest::WebDriver->start(log => $CDLOG, window => [1200, 900]);
$wd->get("$URL/");
my $t_open = time;
my $first = $wd->wait_until('return window.framesReceived >= 10 ? window.demo : null', 20);
ok($first, 'the page received 10 frames within 20 s')
    or diag 'page state: ' . JSON::PP::encode_json($wd->execute('return window.demo')) . "\n" . log_tail();
diag sprintf 'first 10 frames after %.2f s', time - $t_open if $first;

my $sample = q{
    const d = window.demo;
    return { frames: d.framesReceived, last: d.lastFrame, sum: d.canvasChecksum(), bad: d.badFrames,
             width: d.width, height: d.height, stats: d.stats, statsReceived: d.statsReceived,
             skipped: d.skipped, t: performance.now(),
             dom: { frames: document.getElementById('framesReceived').textContent,
                    last: document.getElementById('lastFrame').textContent,
                    viewers: document.getElementById('viewers').textContent,
                    requests: document.getElementById('requests').textContent } };
};
my $a = $wd->execute($sample);
sleep 2;
my $b = $wd->execute($sample);

my $secs = ($b->{t} - $a->{t}) / 1000;
my $fps  = ($b->{frames} - $a->{frames}) / $secs;
diag sprintf 'browser received %d frames in %.2f s: %.1f frames per second (producer: 30); %d skipped in all',
    $b->{frames} - $a->{frames}, $secs, $fps, $b->{skipped};

cmp_ok($b->{frames}, '>', $a->{frames}, 'frames keep arriving');
cmp_ok($b->{last},   '>', $a->{last},   'the frame number (from the producer) increases');
isnt($b->{sum}, $a->{sum}, 'the picture on the canvas changes between two samples');
is($b->{bad}, 0, 'every binary message was a well-formed frame');
is("$b->{width}x$b->{height}", '640x480', 'the picture is 640x480');
like($b->{dom}{frames}, qr/^[1-9]\d*$/, 'the page shows the frames received');
like($b->{dom}{last},   qr/^[1-9]\d*$/, 'the page shows the last frame number');

my $colours = $wd->execute(q{
    const c = document.getElementById('screen');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < d.length; i += 4 * 97) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    return seen.size;
});
cmp_ok($colours, '>', 50, "the canvas shows a picture ($colours colours in a sample), not a blank");

# the shared counters, as the page got them over the WebSocket and from /stats
ok($b->{statsReceived} >= 2, 'the page received counter messages');
cmp_ok($b->{stats}{requests}, '>', 0, 'requests served > 0');
cmp_ok($b->{stats}{viewers}, '>=', 1, 'viewers connected >= 1');
cmp_ok($b->{stats}{frames_sent}, '>', $a->{stats}{frames_sent}, 'frames sent increases');
like($b->{dom}{viewers}, qr/^[1-9]\d*$/, 'the page shows the viewers');
my $s1 = stats();
cmp_ok($s1->{requests}, '>=', $s0->{requests} + 2, 'requests served counted the page and the WebSocket');
is($s1->{viewers}, 1, 'one viewer connected');
cmp_ok($s1->{frames_sent}, '>=', $b->{frames}, 'frames sent covers every frame this page received');

my $png = "$TMP/demo.png";
my $bytes = $wd->screenshot($png);
cmp_ok($bytes, '>', 20_000, "screenshot saved to $png ($bytes bytes)");
is(substr(slurp($png), 0, 8), "\x89PNG\r\n\x1a\n", 'the screenshot is a PNG');

# ---- a second viewer is served by the same event-loop process at the same time
my $first_tab = $wd->window_handle;
$wd->new_window;
$wd->get("$URL/");
my $second = $wd->wait_until('return window.framesReceived >= 5 && window.demo.stats ? window.demo : null', 20);
ok($second, 'a second tab receives frames too');
my $s2 = stats();
is($s2->{viewers}, 2, 'two viewers connected');
is($second->{stats}{pid}, $b->{stats}{pid}, 'the two viewers are streamed by one process (an event loop, no worker per viewer)')
    if $second;
$wd->switch_to($first_tab);
my $still = $wd->execute('return window.framesReceived');
cmp_ok($still, '>', $b->{frames}, 'the first tab kept receiving meanwhile');

# ---- the browser goes away: each session ends (the server sees the end of its stream), viewers drop to 0
$wd->quit;
is_deeply([$wd->leftovers], [], 'no Chromium process is left');
my $gone;
my $deadline = time + 10;
while (time < $deadline) {
    last if ($gone = stats())->{viewers} == 0;
    sleep 0.2;
}
is($gone->{viewers}, 0, 'viewers connected drops to 0 once the browser has gone');
my $left = () = slurp($LOG) =~ /a viewer left/g;
is($left, 2, 'the server logged the end of both streams');
my $f1 = stats()->{frames_sent};
sleep 0.5;
is(stats()->{frames_sent}, $f1, 'no frames are sent once nobody watches');

# ---- Ctrl-C: SIGINT to the demo's process group, as a terminal sends it
my $pgid = $demo_pid;
kill 'INT', -$pgid;
my $status;
$deadline = time + 15;
while (time < $deadline) {
    if (waitpid($demo_pid, WNOHANG) == $demo_pid) { $status = $?; last }
    sleep 0.1;
}
ok(defined $status, 'scripts/demo exits within 15 s of Ctrl-C') or diag log_tail();
undef $demo_pid if defined $status;
is($status >> 8, 130, 'and reports the interrupt (exit status 130)') if defined $status;
like(slurp($LOG), qr/^demo: stopped$/m, 'it says it stopped');
$deadline = time + 5;
sleep 0.1 while group_alive($pgid) && time < $deadline;
ok(!group_alive($pgid), 'no process of the demo is left (producer and Twiggy)');
is_deeply([shm_objects()], [], 'the shared-memory objects are removed');
ok(!IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $PORT, Timeout => 2), "port $PORT is closed");
like(slurp($LOG), qr/sharedarea-demo-producer: stopped by a signal after \d+ frames/, 'the producer exited cleanly');

alarm 0;
done_testing;
if (Test::More->builder->is_passing) { unlink $LOG, $CDLOG }
else { diag "logs kept: $LOG $CDLOG" }
