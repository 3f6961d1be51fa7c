#!/usr/bin/perl
# SharedArea::Notify: an event loop (AnyEvent, Mojo::IOLoop) is called back
# after another process updates an area, without blocking; updates made
# while the loop is busy make one call; a dropped guard stops its callback;
# a forked child gets its own wake-ups. SharedArea::notify_fd underneath.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use SharedAreaTest::Proc qw(require_blib);

require_blib();
require SharedArea;
require SharedArea::Notify;
$SIG{ALRM} = sub { die "test exceeded its time limit\n" };
alarm 120;

# Writes 1..$n into the area's first 8 bytes from another process, $gap s
# apart; with $ack (another area: a write there is no update of $id), each
# write after the first waits (at most 10 s) until the reader has acknowledged
# the one before by writing its value into $ack's first 8 bytes.
sub writer {
    my ($id, $n, $gap, $ack) = @_;
    my $pid = fork // die "fork: $!";
    return $pid if $pid;
    sleep 0.2;
    for my $i (1 .. $n) {
        if (defined $ack && $i > 1) {
            my $deadline = time + 10;
            sleep 0.005 while uwsgi::sharedarea_read64($ack, 0) != $i - 1 && time < $deadline;
        }
        sleep $gap;
        uwsgi::sharedarea_write64($id, 0, $i);
    }
    POSIX::_exit(0);
}

# --- the descriptor -------------------------------------------------------------
{
    my $id = SharedArea::init('size=4096');
    my $fd = SharedArea::notify_fd($id);
    ok($fd > 2, "notify_fd gives a descriptor ($fd)");
    is(SharedArea::notify_fd($id), $fd, '... the same one on every call');
    like(do { local $@; eval { SharedArea::notify_fd(999) }; $@ }, qr/^notify_fd: area 999: no such area/,
        'an unknown area: a clear error');
    open(my $fh, '<&=', $fd) or die;
    my $rin = '';
    vec($rin, $fd, 1) = 1;
    is(select(my $r = $rin, undef, undef, 0.1), 0, 'not readable before any update');
    uwsgi::sharedarea_update($id);
    is(select($r = $rin, undef, undef, 2), 1, 'readable after an update');
    is(sysread($fh, my $buf, 8), 8, 'reading the counter...');
    is(select($r = $rin, undef, undef, 0.1), 0, '... re-arms it');
}

# --- AnyEvent -------------------------------------------------------------------
SKIP: {
    skip 'AnyEvent is not installed', 6 unless eval { require AnyEvent; 1 };
    my $id = SharedArea::init('size=4096');
    my $ack = SharedArea::init('size=4096');
    my (@seen, @other, @ticks_at);
    my $cv = AnyEvent->condvar;
    my $ticks = 0;
    my $guard = SharedArea::Notify->anyevent($id, sub {
        my ($got) = @_;
        push @seen, uwsgi::sharedarea_read64($got, 0);
        push @ticks_at, $ticks;
        uwsgi::sharedarea_write64($ack, 0, $seen[-1]);    # the writer's next update waits for this
        $cv->send if $seen[-1] == 5;
    });
    my $other = SharedArea::Notify->anyevent($id, sub { push @other, 1 });
    my $tick = AnyEvent->timer(after => 0.01, interval => 0.01, cb => sub { $ticks++ });
    my $pid = writer($id, 5, 0.1, $ack);
    my $t = AnyEvent->timer(after => 30, cb => sub { $cv->send });
    $cv->recv;
    waitpid $pid, 0;
    is($seen[-1], 5, 'AnyEvent: called back after another process\'s updates, and read the last one');
    my %uniq;
    is_deeply([ grep { !$uniq{$_}++ } @seen ], [ 1 .. 5 ],
        '... for each update when the loop keeps up (each waited for the call before it): ' . "@seen");
    cmp_ok($ticks_at[-1] - $ticks_at[0], '>', 0,
        "... while the loop went on running its timers between the calls ($ticks_at[0] -> $ticks_at[-1] ticks)");
    ok(scalar @other, 'every callback registered for the area is called');

    # a busy loop: five updates while it does not run make one call
    @seen = ();
    undef $other;
    for my $i (6 .. 10) { uwsgi::sharedarea_write64($id, 0, $i) }
    sleep 0.2;
    $cv = AnyEvent->condvar;
    my $t2 = AnyEvent->timer(after => 0.3, cb => sub { $cv->send });
    $cv->recv;
    is_deeply(\@seen, [10], 'five updates while the loop was busy: one call, reading the latest');

    undef $guard;
    @seen = ();
    uwsgi::sharedarea_update($id);
    $cv = AnyEvent->condvar;
    my $t3 = AnyEvent->timer(after => 0.3, cb => sub { $cv->send });
    $cv->recv;
    is(scalar @seen, 0, 'a dropped guard stops its callback');
}

# --- Mojo::IOLoop ---------------------------------------------------------------
SKIP: {
    skip 'Mojo::IOLoop is not installed', 2 unless eval { require Mojo::IOLoop; 1 };
    my $id = SharedArea::init('size=4096');
    my @seen;
    my $w = SharedArea::Notify->mojo($id, sub {
        push @seen, uwsgi::sharedarea_read64($_[0], 0);
        Mojo::IOLoop->stop if $seen[-1] == 3;
    });
    my $pid = writer($id, 3, 0.1);
    my $timeout = Mojo::IOLoop->timer(10 => sub { Mojo::IOLoop->stop });
    Mojo::IOLoop->start;
    Mojo::IOLoop->remove($timeout);
    waitpid $pid, 0;
    is($seen[-1], 3, 'Mojo::IOLoop: called back after another process\'s updates');
    undef $w;
    @seen = ();
    uwsgi::sharedarea_update($id);
    Mojo::IOLoop->timer(0.3 => sub { Mojo::IOLoop->stop });
    Mojo::IOLoop->start;
    is(scalar @seen, 0, '... and not after its watcher is dropped');
}

# --- fork: the child's own wake-ups -----------------------------------------------
{
    my $id = SharedArea::init('size=4096');
    my $fd = SharedArea::notify_fd($id);
    pipe(my $r, my $wr) or die;
    my $pid = fork // die;
    if (!$pid) {
        close $r;
        my $cfd = SharedArea::notify_fd($id);
        open(my $fh, '<&=', $cfd) or POSIX::_exit(2);
        syswrite $wr, "ready $cfd\n";
        my $rin = '';
        vec($rin, $cfd, 1) = 1;
        my $n = select(my $x = $rin, undef, undef, 5);
        syswrite $wr, $n == 1 ? "told\n" : "not told\n";
        POSIX::_exit(0);
    }
    close $wr;
    my $ready = <$r>;
    is($ready, "ready $fd\n", 'a forked child gets a descriptor on the same number');
    uwsgi::sharedarea_update($id);
    is(scalar <$r>, "told\n", '... and is told of the parent\'s update by its own helper');
    waitpid $pid, 0;
}

done_testing();
