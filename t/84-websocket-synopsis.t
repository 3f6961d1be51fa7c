#!/usr/bin/perl
# The code of SharedArea::WebSocket's POD, run as written (only the area's
# name is made unique): the SYNOPSIS loop under Starman with one worker, whose
# loop ends when its viewer leaves (the worker serves the next viewer), and
# the EVENT LOOPS app under Twiggy and Feersum, one process streaming to
# several viewers, forgetting the one that leaves, answering pages meanwhile.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use SharedAreaTest::Proc qw(require_blib tmpdir write_file slurp http_get stop_server);
use SharedAreaTest::WebSocket qw(start_ws_server ws_connect ws_next_frame client_frame);

require_blib();
require SharedArea;
$SIG{ALRM} = sub { die "test exceeded its time limit\n" };
alarm 240;

my $pm = slurp("$FindBin::Bin/../perl/lib/SharedArea/WebSocket.pm") or die;

# The first run of verbatim lines after "=head1 $section", unindented.
sub pod_code {
    my ($section) = @_;
    my ($body) = $pm =~ /^=head1 \Q$section\E\n(.*?)^=/ms or die "no =head1 $section";
    my ($code) = $body =~ /(^ {4}.*\n(?:^(?: {4}.*)?\n)*)/m or die "no code in $section";
    $code =~ s/^ {4}//mg;
    $code =~ s/\A\n+//;
    return $code;
}

my $name = "sa-synopsis-$$";
my $area = SharedArea::init("name=$name,size=65536");
SharedArea::set_used($area, 1000);
END { local $?; SharedArea::remove($name) if defined $area }

# A producer: a frame (its number in the first 8 bytes) 20 times a second.
my $producer = fork // die;
if (!$producer) {
    for my $n (1 .. 100_000) {
        uwsgi::sharedarea_write64($area, 0, $n);
        sleep 0.05;
    }
    POSIX::_exit(0);
}
END { local $?; if ($producer) { kill 'KILL', $producer; waitpid $producer, 0 } }

my $dir = tmpdir();
sub app_file {
    my ($section) = @_;
    my $code = pod_code($section);
    like($code, qr/name=frames/, "the $section code attaches name=frames") or return;
    $code =~ s/name=frames/name=$name/g;
    (my $file = "$dir/" . lc($section) . '.psgi') =~ s/ /-/g;
    write_file($file, $code);
    return $file;
}

# The next $want frames received on $c (fewer if $secs pass first), as their
# numbers. Counting frames, not timing them: how fast they come is the
# benchmark's business (bench/demo-viewers.pl), not a test's.
sub frames_in {
    my ($c, $want, $secs) = @_;
    my @n;
    my $deadline = time + $secs;
    while (@n < $want && time < $deadline) {
        my $f = ws_next_frame($c, $deadline - time) or last;
        push @n, unpack('Q<', $f->{payload}) if $f->{op} == 2;
    }
    return @n;
}

sub increasing { my @n = @_; return @n >= 2 && !grep { $n[$_] <= $n[ $_ - 1 ] } 1 .. $#n }

SKIP: {
    skip 'Starman is not installed', 6 unless SharedAreaTest::Proc::find_program('starman');
    my $file = app_file('SYNOPSIS') or skip 'no synopsis', 5;
    my $srv = start_ws_server('starman', app => $file, dir => $dir);    # one worker
    my $c = ws_connect($srv->{port}, '/ws');
    is($c->{status}, 101, 'SYNOPSIS under Starman: the upgrade is answered');
    my @n = frames_in($c, 10, 20);
    ok(increasing(@n) && @n >= 10, 'the viewer gets new frames, each newer than the last (' . scalar(@n) . ' of 10)');
    close $c->{sock};    # the viewer leaves
    my $t0 = time;
    my $c2 = ws_connect($srv->{port}, '/ws', timeout => 15);
    is($c2->{status}, 101, "the loop ended when the viewer left: the only worker takes the next viewer");
    diag sprintf 'the next viewer was answered %.2f s after the first left', time - $t0;
    ok(scalar(frames_in($c2, 3, 15)) >= 3, '... and streams to it');
    ws_send_close($c2);
    my ($st) = http_get($srv->{port}, '/', timeout => 15);
    is($st, 400, 'after a viewer that closed properly, the worker answers a plain GET (the handshake refuses it)');
    stop_server($srv);
}

for my $kind (qw(twiggy feersum)) {
    SKIP: {
        my $module = $kind eq 'twiggy' ? 'Twiggy::Server' : 'Feersum';
        skip "$module is not installed", 6 unless eval "require $module; 1";
        skip 'AnyEvent is not installed', 6 unless eval { require AnyEvent; 1 };
        my $file = app_file('EVENT LOOPS') or skip 'no event-loop code', 5;
        my $srv = start_ws_server($kind, app => $file, dir => $dir);
        my @c = map { ws_connect($srv->{port}, '/ws') } 1 .. 3;
        is(scalar(grep { $_->{status} == 101 } @c), 3, "EVENT LOOPS under $kind: three viewers upgraded");
        my $t0 = time;
        my ($st) = http_get($srv->{port}, '/', timeout => 15);
        is($st, 400, sprintf('... a plain request is answered while they stream (in %.3f s)', time - $t0));
        my @n = map { [ frames_in($_, 10, 20) ] } @c;
        is(scalar(grep { increasing(@$_) && @$_ >= 10 } @n), 3,
            '... each viewer gets new frames, each newer than the last (' . join(', ', map { scalar @$_ } @n) . ' of 10)');
        close $c[0]{sock};    # one leaves
        sleep 0.3;
        my @m = map { [ frames_in($_, 10, 20) ] } @c[1, 2];
        is(scalar(grep { increasing(@$_) && @$_ >= 10 } @m), 2, '... the others go on after one left');
        my $log = slurp($srv->{log}) // '';
        unlike($log, qr/died|error/i, '... with nothing in the server log') or diag $log;
        my $c4 = ws_connect($srv->{port}, '/ws');
        ok($c4->{status} == 101 && frames_in($c4, 3, 15) >= 3, '... and a new viewer streams too');
        stop_server($srv);
    }
}

sub ws_send_close {
    my ($c) = @_;
    syswrite $c->{sock}, client_frame(8, pack('n', 1000));
    my $deadline = time + 5;
    while (my $f = ws_next_frame($c, $deadline - time)) { last if $f->{op} == 8 }
    close $c->{sock};
    return;
}

done_testing();
