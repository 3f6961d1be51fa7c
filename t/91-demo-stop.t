#!/usr/bin/perl
# scripts/demo leaves nothing behind however it is stopped: two Ctrl-Cs in a
# row (the second arriving during the cleanup), SIGTERM twice (as `timeout -k`
# sends), SIGKILL of the script alone, and SIGKILL of its whole process group.
# After each: no demo process, no /dev/shm object, the port closed.
use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use IO::Socket::INET;
use POSIX qw(WNOHANG _exit setsid);
use Test::More;
use Time::HiRes qw(time sleep);

use lib dirname(abs_path(__FILE__)) . '/lib';
use SharedAreaTest::Proc qw(needs free_port);

my $ROOT = abs_path(dirname(abs_path(__FILE__)) . '/..');
-x "$ROOT/scripts/demo" && -e "$ROOT/examples/producer.c" or plan skip_all => 'no scripts/demo here';
needs(programs => [qw(twiggy gcc cargo make)], modules => [qw(Plack Twiggy)]);
-e "$ROOT/blib/lib/SharedArea.pm" or plan skip_all => 'SharedArea is not built (make)';
my $TMP = "$ROOT/t/tmp";
make_path($TMP);

my ($demo_pid, $name, $log);
my @names;

sub slurp { my ($f) = @_; open my $fh, '<', $f or return ''; local $/; return <$fh> // '' }
sub group_alive { my ($pgid) = @_; return kill(0, -$pgid) ? 1 : 0 }
sub shm_left { grep { -e "/dev/shm/$_" } map { ($_, "$_-stats") } @_ }
sub users_of { # pids that map /dev/shm/NAME
    my ($n) = @_;
    my @pids;
    for my $maps (glob '/proc/[0-9]*/maps') {
        my $c = slurp($maps);
        push @pids, $maps =~ m{/proc/(\d+)/} if index($c, "/dev/shm/$n") >= 0;
    }
    return @pids;
}

sub cleanup {
    for my $n (@names) { kill 'KILL', users_of($n) }
    if ($demo_pid) { kill 'KILL', -$demo_pid; waitpid($demo_pid, 0); undef $demo_pid }
    unlink "/dev/shm/$_" for shm_left(@names);
}
END { my $status = $?; cleanup(); $? = $status }
$SIG{ALRM} = sub { cleanup(); die "t/91-demo-stop.t: exceeded its time limit\n" };
alarm 500;

sub start_demo {
    my ($tag) = @_;
    $name = "sharedarea-demo-t91-$$-$tag";
    push @names, $name;
    $log = "$TMP/demo91-$$-$tag.log";
    my $port = free_port();
    $demo_pid = fork // die "fork: $!";
    if (!$demo_pid) {
        setsid();
        open STDIN,  '<',  '/dev/null';
        open STDOUT, '>',  $log or _exit(97);
        open STDERR, '>&', \*STDOUT or _exit(97);
        delete $ENV{$_} for grep {/^SHAREDAREA_DEMO_/} keys %ENV;
        @ENV{qw(PORT SHAREDAREA_DEMO_NAME SHAREDAREA_DEMO_NO_INSTALL)} = ($port, $name, 1);
        exec "$ROOT/scripts/demo" or _exit(98);
    }
    my $deadline = time + 240;    # builds what a test run has not built yet
    while (time < $deadline) {
        if (waitpid($demo_pid, WNOHANG) == $demo_pid) {
            undef $demo_pid;
            BAIL_OUT("scripts/demo exited before serving:\n" . slurp($log));
        }
        return $port if slurp($log) =~ /open http:\S+ in a browser/;
        sleep 0.1;
    }
    BAIL_OUT("scripts/demo did not serve within 240 s:\n" . slurp($log));
}

# Waits (bounded) until the demo's processes are gone, then checks what is left.
sub nothing_left {
    my ($how, $pgid, $port) = @_;
    my $deadline = time + 15;
    sleep 0.1 while (group_alive($pgid) || users_of($name) || shm_left($name)) && time < $deadline;
    ok(!group_alive($pgid), "$how: no process of the demo's group is left");
    is_deeply([users_of($name)], [], "$how: no process maps the areas");
    is_deeply([shm_left($name)], [], "$how: the shared-memory objects are removed")
        or diag slurp($log);
    ok(!IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 2), "$how: port $port is closed");
}

sub reap {
    my $deadline = time + 20;
    while (time < $deadline) {
        return $? if waitpid($demo_pid, WNOHANG) == $demo_pid;
        sleep 0.05;
    }
    return;
}

for my $sig (qw(INT TERM)) {
    my $port = start_demo(lc $sig);
    my $pgid = $demo_pid;
    kill $sig, -$pgid;                  # the terminal's Ctrl-C goes to the whole group
    sleep 0.05;
    kill $sig, $demo_pid;               # the impatient second one, during the cleanup
    my $status = reap();
    ok(defined $status, "two SIG$sig: scripts/demo exits") or diag slurp($log);
    undef $demo_pid if defined $status;
    like(slurp($log), qr/^demo: stopped$/m, "two SIG$sig: it finished its cleanup");
    nothing_left("two SIG$sig", $pgid, $port);
}

{
    my $port = start_demo('kill-script');
    my $pgid = $demo_pid;
    kill 'KILL', $demo_pid;             # the script alone: producer and Starman live on
    waitpid($demo_pid, 0);
    undef $demo_pid;
    nothing_left('SIGKILL of the script', $pgid, $port);
}

{
    my $port = start_demo('kill-group');
    my $pgid = $demo_pid;
    kill 'KILL', -$pgid;                # everything in the group at once
    waitpid($demo_pid, 0);
    undef $demo_pid;
    nothing_left('SIGKILL of the process group', $pgid, $port);
}

done_testing;
if (Test::More->builder->is_passing) { unlink glob "$TMP/demo91-$$-*.log" }
