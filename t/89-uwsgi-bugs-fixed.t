# The uWSGI 2.0.21 bugs that SharedArea's POD lists under "Fixed uWSGI bugs"
# (SPEC section 6) and that need processes to show: one test each, on our
# side, with real forked processes.
#   * a %SIG handler that dies during sharedarea_wait wedges the area's lock
#     for every worker in uWSGI (its failure path releases a lock it does not
#     hold); here the lock stays free and every process goes on;
#   * area ids are truncated to a C int in uWSGI (2**32 + 1 is area 1);
#     here such an id does not exist, and a write to it changes no area;
#   * a wait timeout above 2**31 s is truncated in uWSGI (2**32 + 1 waits 1 s);
#     here it is a (very) long wait that an update ends.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use SharedAreaTest::Proc qw(wait_child);

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea;

alarm 120;

my $a0 = SharedArea::init('1');
my $a1 = SharedArea::init('1');
is("$a0 $a1", '0 1', 'areas 0 and 1');

# Forks CODE; the child exits 0 when CODE returns true, 1 otherwise, and
# prints what went wrong.
sub child {
    my ($code) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        alarm 30;
        my $ok = eval { $code->() };
        print STDERR "child $$: $@" if !$ok && $@;
        POSIX::_exit($ok ? 0 : 1);
    }
    return $pid;
}

# --- a handler that dies during a wait leaves the lock free ----------------
{
    # Three processes wait on area 0; each one's SIGALRM handler dies out of
    # the wait. Then the others - and they themselves - must write, lock and
    # wait as usual: in uWSGI the next writer in any worker hangs for good.
    my $t0 = time;
    my @waiters = map {
        child(sub {
            local $SIG{ALRM} = sub { die "alarm in the wait\n" };
            alarm 1;
            my $t = time;
            my $r = eval { uwsgi::sharedarea_wait($a0, 100, 0); 1 };
            alarm 0;
            die "the wait ended without the handler's die: " . ($r ? 'returned' : $@) . "\n"
                if $r || $@ ne "alarm in the wait\n";
            die sprintf("the handler ran after %.2f s, not promptly\n", time - $t) if time - $t > 1.8;
            # (the others are still in their wait until their own alarm: a
            # write now would wake them, so all write after every alarm fired)
            sleep 0.05 while time < $t0 + 2.5;
            # the same process goes on: a write and a lock do not hang
            local $SIG{ALRM} = sub { die "hung after the handler died\n" };
            alarm 5;
            uwsgi::sharedarea_write($a0, 100 + $$ % 100, 'x');
            uwsgi::sharedarea_wlock($a0);
            uwsgi::sharedarea_inc64($a0, 0);
            uwsgi::sharedarea_unlock($a0);
            alarm 0;
            1;
        })
    } 1 .. 3;
    my @st = map { wait_child($_, 20) } @waiters;
    is("@st", '0 0 0', 'three waiters whose SIGALRM handler died out of sharedarea_wait: each died promptly and then wrote and locked');

    # another process, started afterwards: writes and both locks do not hang
    my $t = time;
    my $other = child(sub {
        local $SIG{ALRM} = sub { die "hung: the lock is wedged\n" };
        alarm 5;
        uwsgi::sharedarea_write($a0, 8, 'after');
        uwsgi::sharedarea_rlock($a0);
        uwsgi::sharedarea_unlock($a0);
        uwsgi::sharedarea_wlock($a0);
        uwsgi::sharedarea_inc64($a0, 0);
        uwsgi::sharedarea_unlock($a0);
        alarm 0;
        1;
    });
    is(wait_child($other, 20), 0, 'then another process writes, takes the read and the write lock');
    cmp_ok(time - $t, '<', 3, '... without waiting on a wedged lock');
    is(uwsgi::sharedarea_read64($a0, 0), 4, 'every increment under the write lock landed (3 waiters + 1)');
    is(uwsgi::sharedarea_read($a0, 8, 5), 'after', '... and the write');

    # and a waiter that is not interrupted is still woken by an update
    my $w = child(sub { uwsgi::sharedarea_wait($a0, 100, 5); 1 });
    sleep 0.3;
    uwsgi::sharedarea_update($a0);
    is(wait_child($w, 10), 0, 'a later wait is woken by an update as usual');
}

# --- ids are not truncated to a C int ----------------------------------------
{
    uwsgi::sharedarea_write($a1, 0, 'area one');
    my $before0 = uwsgi::sharedarea_read($a0, 0);
    my $before1 = uwsgi::sharedarea_read($a1, 0);
    for my $id (4294967296, 4294967297, 8589934593, 18446744073709551615) {
        my $shown = "$id";
        ok(!eval { uwsgi::sharedarea_read($id, 0, 8); 1 }, "read from area $shown dies (uWSGI reads area "
            . ($id & 0xFFFFFFFF) . ')');
        is(ref $@ && $@->name, 'E_NO_SUCH_AREA', '... as an area that does not exist');
        like($@, qr/^sharedarea_read: area \Q$shown\E: /, '... naming that area, not a truncated one');
        ok(!eval { uwsgi::sharedarea_write($id, 0, 'TRUNCATED'); 1 }, "write to area $shown dies");
        is(ref $@ && $@->name, 'E_NO_SUCH_AREA', '... as an area that does not exist');
        like($@, qr/^sharedarea_write: area \Q$shown\E: /, '... naming that area');
        ok(!eval { uwsgi::sharedarea_inc64($id, 8); 1 }, "inc64 on area $shown dies");
        ok(!eval { uwsgi::sharedarea_wait($id, 0, 1); 1 }, "wait on area $shown dies");
        is(ref $@ && $@->name, 'E_NO_SUCH_AREA', '... at once, as an area that does not exist');
    }
    # from another process too (the areas are shared): nothing landed anywhere
    my $pid = child(sub { !eval { uwsgi::sharedarea_write(2**32 + 1, 0, 'CHILD'); 1 } });
    is(wait_child($pid, 10), 0, 'a forked process writing to area 2**32 + 1 dies too');
    is(uwsgi::sharedarea_read($a1, 0), $before1, 'area 1 is unchanged (uWSGI: the writes land in area 1)');
    is(uwsgi::sharedarea_read($a0, 0), $before0, 'area 0 is unchanged');
}

# --- a wait timeout above 2**31 s is not truncated ------------------------------
for my $timeout (2**31 + 1, 2**32 + 1) {
    # uWSGI takes 2**32 + 1 as 1 (and 2**31 + 1 as a negative, one poll):
    # it dies within about a second. Here the wait lasts until the update.
    my $start = time;
    my $pid = child(sub {
        my $r = eval { uwsgi::sharedarea_wait($a0, 100, $timeout) };
        die "the wait died: $@" unless $r;
        die sprintf("returned after %.2f s, before the update\n", time - $start) if time - $start < 1.9;
        1;
    });
    sleep 2;
    my $alive = waitpid($pid, POSIX::WNOHANG()) == 0;
    ok($alive, "a wait with timeout $timeout is still waiting after 2 s (uWSGI gives up after 1 s or less)");
    uwsgi::sharedarea_update($a0);
    is(wait_child($pid, 10), 0, '... and returns 1 when the area is updated');
}

done_testing();
