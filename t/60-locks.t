# rlock/wlock/unlock: reentrant for the holder, exclusive across processes,
# misuse dies instead of hanging, and a dead holder is recovered with a warning.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea;

alarm 120;

my $id = SharedArea::init('1');

sub dies (&$$) {
    my ($code, $re, $name) = @_;
    my $ok = eval { $code->(); 1 };
    ok(!$ok, "$name dies") and like($@, $re, "$name: message");
}

# Starts CODE in a child; returns the pid.
sub child {
    my ($code) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $ok = eval { $code->(); 1 };
        print STDERR "child: $@" unless $ok;
        POSIX::_exit($ok ? 0 : 1);
    }
    return $pid;
}

# --- the holder of the write lock can do everything
is(uwsgi::sharedarea_wlock($id), 1, 'wlock returns 1');
is(uwsgi::sharedarea_write($id, 0, 'locked'), 1, 'write under own wlock');
is(uwsgi::sharedarea_read($id, 0, 6), 'locked', 'read under own wlock');
is(uwsgi::sharedarea_inc64($id, 8), 1, 'inc64 under own wlock');
is(uwsgi::sharedarea_write32($id, 16, 5), 1, 'write32 under own wlock');
is(uwsgi::sharedarea_read32($id, 16), 5, 'read32 under own wlock');
is(uwsgi::sharedarea_update($id), 1, 'update under own wlock');
my $buf = '';
is(uwsgi::sharedarea_readfast($id, 0, $buf, 6), 6, 'readfast under own wlock');
is(uwsgi::sharedarea_unlock($id), 1, 'unlock returns 1');
dies { uwsgi::sharedarea_unlock($id) } qr/^sharedarea_unlock: area 0: this thread does not hold the area's lock/,
    'unlock without a lock';

# --- the holder of the read lock can read, not write
is(uwsgi::sharedarea_rlock($id), 1, 'rlock returns 1');
is(uwsgi::sharedarea_read($id, 0, 6), 'locked', 'read under own rlock');
is(uwsgi::sharedarea_read64($id, 8), 1, 'read64 under own rlock');
dies { uwsgi::sharedarea_write($id, 0, 'x') } qr/^sharedarea_write: area 0: this thread holds the area's read lock/,
    'write under own rlock';
dies { uwsgi::sharedarea_inc64($id, 8) } qr/^sharedarea_inc64: area 0: .*read lock/, 'inc64 under own rlock';
dies { uwsgi::sharedarea_wlock($id) } qr/^sharedarea_wlock: area 0: .*read lock/, 'wlock under own rlock';
is(uwsgi::sharedarea_read($id, 0, 6), 'locked', '... nothing changed');
is(uwsgi::sharedarea_read64($id, 8), 1, '... nothing changed');
is(uwsgi::sharedarea_unlock($id), 1, 'unlock the rlock');
dies { uwsgi::sharedarea_unlock($id) } qr/^sharedarea_unlock: area 0: /, 'a second unlock';

# --- waiting while holding the lock would never be woken: it dies at once
for my $mode (qw(rlock wlock)) {
    no strict 'refs';
    &{"uwsgi::sharedarea_$mode"}($id);
    my $t0 = time;
    dies { uwsgi::sharedarea_wait($id, 0, 2) } qr/^sharedarea_wait: area 0: this thread holds the area's lock/,
        "wait under own $mode";
    cmp_ok(time - $t0, '<', 0.5, '... at once');
    uwsgi::sharedarea_unlock($id);
}

# --- nesting
is(uwsgi::sharedarea_wlock($id), 1, 'wlock');
is(uwsgi::sharedarea_wlock($id), 1, 'wlock again (nested)');
is(uwsgi::sharedarea_rlock($id), 1, 'rlock under own wlock');
uwsgi::sharedarea_unlock($id) for 1 .. 2;
my $pid = child(sub { uwsgi::sharedarea_write($id, 100, 'child was here') });
sleep 0.3;
isnt(uwsgi::sharedarea_read($id, 100, 14), 'child was here', 'still held after 2 of 3 unlocks: the other process waits');
is(uwsgi::sharedarea_unlock($id), 1, 'the last unlock');
my $t = time;
waitpid $pid, 0;
is($?, 0, 'the other process then writes');
cmp_ok(time - $t, '<', 1, '... at once');
is(uwsgi::sharedarea_read($id, 100, 14), 'child was here', '... what it wrote');
dies { uwsgi::sharedarea_unlock($id) } qr/^sharedarea_unlock: /, 'one unlock too many';

uwsgi::sharedarea_rlock($id) for 1 .. 3;
is(uwsgi::sharedarea_read($id, 100, 5), 'child', 'reads under a nested rlock');
uwsgi::sharedarea_unlock($id) for 1 .. 3;
dies { uwsgi::sharedarea_unlock($id) } qr/^sharedarea_unlock: /, 'rlock x3, unlock x4';

# --- readers share, writers exclude
uwsgi::sharedarea_rlock($id);
$pid = child(sub {
    uwsgi::sharedarea_rlock($id);
    my $s = uwsgi::sharedarea_read($id, 100, 5);
    uwsgi::sharedarea_unlock($id);
    die "read $s\n" unless $s eq 'child';
});
$t = time;
waitpid $pid, 0;
is($?, 0, 'another process takes the read lock while this one holds it');
cmp_ok(time - $t, '<', 0.5, '... without waiting');
uwsgi::sharedarea_unlock($id);

uwsgi::sharedarea_write64($id, 200, 0);
uwsgi::sharedarea_rlock($id);
$pid = child(sub { uwsgi::sharedarea_inc64($id, 200) });
sleep 0.3;
is(uwsgi::sharedarea_read64($id, 200), 0, 'a writer waits while this process holds the read lock');
uwsgi::sharedarea_unlock($id);
waitpid $pid, 0;
is(uwsgi::sharedarea_read64($id, 200), 1, '... and writes after the unlock');

# --- a child does not own its parent's lock
uwsgi::sharedarea_wlock($id);
$pid = child(sub {
    my $ok = eval { uwsgi::sharedarea_unlock($id); 1 };
    die "the child could unlock its parent's lock\n" if $ok;
});
waitpid $pid, 0;
is($?, 0, "a forked child cannot unlock the parent's write lock");
uwsgi::sharedarea_unlock($id);

# --- a holder that dies: the lock is recovered within a second, with a warning
for my $mode (qw(wlock rlock)) {
    $pid = child(sub {
        no strict 'refs';
        &{"uwsgi::sharedarea_$mode"}($id);
        POSIX::_exit(0);    # exits holding the lock
    });
    waitpid $pid, 0;
    my @warnings;
    local $SIG{__WARN__} = sub { push @warnings, @_ };
    my $rec = SharedArea::info($id)->{recoveries};
    $t = time;
    is(uwsgi::sharedarea_wlock($id), 1, "wlock after a $mode holder died");
    my $took = time - $t;
    cmp_ok($took, '<', 1.5, '... within about a second');
    uwsgi::sharedarea_unlock($id);
    is(SharedArea::info($id)->{recoveries}, $rec + 1, '... counted as a recovery');
    is(scalar @warnings, 1, '... with one warning');
    like($warnings[0] // '', qr/^sharedarea_wlock: area 0: .*\bat \S+ line \d+\.\n\z/, '... naming the function and the area');
    diag("warning: $warnings[0]") if @warnings;
}

done_testing();
