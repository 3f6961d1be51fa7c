#!/usr/bin/perl
# SharedArea's Perl API against the trivial-XS-call baseline and against the
# shared-memory modules a Perl programmer would otherwise use
# (Cache::FastMmap, File::Map), plus a 2-process contended counter. Every
# figure is measured in this run: median of 5 reps of a ~0.3 s loop, in ns
# per loop iteration (the loop's own cost included, as in the empty-loop row).
# Small ops run in void context, like the trivial XS call they are held to.
# When real uWSGI with the psgi plugin is installed, the same loops also run
# inside a uWSGI worker against uWSGI's own sharedarea, side by side.
#
#   perl Makefile.PL && make && perl bench/perl-bench.pl [--no-uwsgi] [--reps N] [--secs S]
#
# Targets (SPEC performance goals): small ops <= 1.5x the trivial XS call;
# readfast of 64 KiB <= 0.6x read of 64 KiB; contended inc64 <= 150 ns per
# increment with an exact total. Rows that miss a target are marked MISS.
use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use Getopt::Long;
use POSIX qw(_exit);
use Time::HiRes qw(time);

my $ROOT;
BEGIN { $ROOT = abs_path(dirname(abs_path(__FILE__)) . '/..') }
use lib "$ROOT/blib/lib", "$ROOT/blib/arch", "$ROOT/t/lib";
BEGIN {
    -e "$ROOT/blib/lib/SharedArea.pm" or die "perl-bench: SharedArea is not built: run 'perl Makefile.PL && make' in $ROOT\n";
    delete $ENV{UWSGI_SHAREDAREA};
}
use SharedArea;
use Scalar::Util ();
use Cache::FastMmap;
use File::Map qw(map_anonymous);
use Fcntl qw(:flock);

my %opt = (reps => 5, secs => 0.3, uwsgi => 1);
GetOptions('reps=i' => \$opt{reps}, 'secs=f' => \$opt{secs}, 'uwsgi!' => \$opt{uwsgi})
    or die "usage: $0 [--no-uwsgi] [--reps N] [--secs S]\n";
my $T_START = time;
my $LOAD_START = _loadavg();
my $TMP = tempdir('sharedarea-bench-XXXXXX', TMPDIR => 1, CLEANUP => 1);

# The measuring code, shared verbatim with the uWSGI worker (see below).
my $MEASURE_SRC = <<'MEASURE';
sub measure_loop {
    my ($body, $reps, $secs) = @_;
    my $code = "package main; no warnings; no strict q(vars); sub { my \$n = shift; my \$t0 = Time::HiRes::time(); "
        . "for (1 .. \$n) { $body } return Time::HiRes::time() - \$t0 }";
    my $sub = eval $code or die "measure_loop: cannot compile { $body }: $@";
    my $n = 1000;
    while (1) {    # calibrate to about $secs per rep
        my $t = $sub->($n);
        if ($t > 0.05) { $n = int($n * $secs / $t) || 1; last }
        $n *= 4;
    }
    my @ns = sort { $a <=> $b } map { $sub->($n) * 1e9 / $n } 1 .. $reps;
    return { med => $ns[ $#ns / 2 ], min => $ns[0], max => $ns[-1], iters => $n };
}
MEASURE
eval $MEASURE_SRC;
die $@ if $@;

our ($x, $buf, $S8, $S64K, $CFM, $MAP);
$S8 = 'abcdefgh';
$S64K = 'x' x 65536;
$buf = "\0" x 65536;

my $AREA = SharedArea::init('32');    # 128 KiB
die "perl-bench: expected area 0, got $AREA (UWSGI_SHAREDAREA set?)\n" unless $AREA == 0;
uwsgi::sharedarea_write(0, 0, $S64K);

$CFM = Cache::FastMmap->new(
    share_file => "$TMP/cfm", init_file => 1, raw_values => 1, unlink_on_exit => 1,
    page_size => '1m', num_pages => 3, expire_time => 0,
);
$CFM->set('k8', $S8);
$CFM->set('k64', $S64K);
map_anonymous $MAP, 131072, 'shared';
substr($MAP, 0, 65536) = $S64K;

# ---------------------------------------------------------------------------
my @rows = (
    # [group, label, loop body, key for targets, uWSGI body or undef]
    [ 'baseline', 'empty loop iteration', '', 'empty', '' ],
    [ 'baseline', 'trivial XS call  Scalar::Util::reftype(undef)', 'Scalar::Util::reftype(undef)', 'xs',
      'Scalar::Util::reftype(undef)' ],
    [ 'SharedArea', 'read64   uwsgi::sharedarea_read64(0, 128)', 'uwsgi::sharedarea_read64(0, 128)', 'small' ],
    [ 'SharedArea', 'write64  uwsgi::sharedarea_write64(0, 128, 12345)', 'uwsgi::sharedarea_write64(0, 128, 12345)', 'small' ],
    [ 'SharedArea', 'inc64    uwsgi::sharedarea_inc64(0, 128)', 'uwsgi::sharedarea_inc64(0, 128)', 'small' ],
    [ 'SharedArea', 'read 8 B   uwsgi::sharedarea_read(0, 128, 8)', 'uwsgi::sharedarea_read(0, 128, 8)', 'small',
      'uwsgi::sharedarea_read(0, 128, 8)' ],
    [ 'SharedArea', 'read 8 B + assign  $x = uwsgi::sharedarea_read(0, 128, 8)', '$x = uwsgi::sharedarea_read(0, 128, 8)', '',
      '$x = uwsgi::sharedarea_read(0, 128, 8)' ],
    [ 'SharedArea', 'write 8 B  uwsgi::sharedarea_write(0, 128, $S8)', 'uwsgi::sharedarea_write(0, 128, $S8)', 'small',
      'uwsgi::sharedarea_write(0, 128, $S8)' ],
    [ 'SharedArea', 'read 64 KiB      $x = uwsgi::sharedarea_read(0, 0, 65536)', '$x = uwsgi::sharedarea_read(0, 0, 65536)',
      'read64k', '$x = uwsgi::sharedarea_read(0, 0, 65536)' ],
    [ 'SharedArea', 'readfast 64 KiB  uwsgi::sharedarea_readfast(0, 0, $buf, 65536)',
      'uwsgi::sharedarea_readfast(0, 0, $buf, 65536)', 'readfast64k' ],
    [ 'SharedArea', 'write 64 KiB     uwsgi::sharedarea_write(0, 0, $S64K)', 'uwsgi::sharedarea_write(0, 0, $S64K)', '',
      'uwsgi::sharedarea_write(0, 0, $S64K)' ],
    # (not run inside uWSGI: a loop of its lock calls hangs the worker or
    # corrupts the lock, see "Migrating from uWSGI" in the POD)
    [ 'SharedArea', 'rlock + unlock   uwsgi::sharedarea_rlock(0); ..._unlock(0)',
      'uwsgi::sharedarea_rlock(0); uwsgi::sharedarea_unlock(0)', '' ],
    [ 'SharedArea', 'wlock + unlock   uwsgi::sharedarea_wlock(0); ..._unlock(0)',
      'uwsgi::sharedarea_wlock(0); uwsgi::sharedarea_unlock(0)', '' ],
    [ 'SharedArea', 'wlock, 1 s timeout + unlock  uwsgi::sharedarea_wlock(0, 1); ..._unlock(0)',
      'uwsgi::sharedarea_wlock(0, 1); uwsgi::sharedarea_unlock(0)', '' ],
    [ "Cache::FastMmap $Cache::FastMmap::VERSION, raw_values", 'get 8 B     $x = $CFM->get("k8")', '$x = $CFM->get("k8")', '' ],
    [ "Cache::FastMmap $Cache::FastMmap::VERSION, raw_values", 'set 8 B     $CFM->set("k8", $S8)', '$CFM->set("k8", $S8)', '' ],
    [ "Cache::FastMmap $Cache::FastMmap::VERSION, raw_values", 'get 64 KiB  $x = $CFM->get("k64")', '$x = $CFM->get("k64")', '' ],
    [ "Cache::FastMmap $Cache::FastMmap::VERSION, raw_values", 'set 64 KiB  $CFM->set("k64", $S64K)', '$CFM->set("k64", $S64K)', '' ],
    [ "File::Map $File::Map::VERSION, anonymous MAP_SHARED (no lock)", 'substr read 8 B     $x = substr($MAP, 128, 8)',
      '$x = substr($MAP, 128, 8)', '' ],
    [ "File::Map $File::Map::VERSION, anonymous MAP_SHARED (no lock)", 'substr read 64 KiB  $x = substr($MAP, 0, 65536)',
      '$x = substr($MAP, 0, 65536)', '' ],
);

# --- optional: the same loops inside a real uWSGI worker ---------------------
my %uwsgi;
if ($opt{uwsgi}) {
    %uwsgi = eval { measure_in_uwsgi() };
    if ($@) { chomp(my $e = $@); print "(uWSGI side skipped: $e)\n" }
}

# --- ours and the peers, in this process ------------------------------------
my %res;
for my $r (@rows) {
    $res{ $r->[1] } = measure_loop($r->[2], $opt{reps}, $opt{secs});
}
my $empty = $res{ $rows[0][1] }{med};
my $xs    = $res{ $rows[1][1] }{med};
my ($read64k) = map { $res{ $_->[1] }{med} } grep { $_->[3] eq 'read64k' } @rows;

printf "\nSharedArea Perl benchmark -- perl %s on %s, %d CPUs; %d reps x ~%.1f s per figure, median ns per loop iteration\n",
    $^V, $^O, _ncpu(), $opt{reps}, $opt{secs};
printf "load average at start: %s%s\n", $LOAD_START,
    ($LOAD_START =~ /^(\S+)/ && $1 > 0.5 ? '  (WARNING: the machine is busy; figures are unreliable)' : '');
print "ratio: against the trivial XS call (small ops, target <= 1.5) or against read 64 KiB (readfast, target <= 0.6);\n"
    . "net: the same ratio with the empty loop subtracted from both (information only)\n\n";
my $W = 74;
printf "%-${W}s %9s %9s %9s %7s %6s  %s\n", 'operation', 'ns/op', 'min', 'max', 'ratio', 'net', (%uwsgi ? 'uWSGI 2.0 same loop' : '');
print '-' x ($W + 48 + (%uwsgi ? 22 : 0)), "\n";
my ($group, @miss) = ('');
for my $r (@rows) {
    my ($g, $label, $body, $key, $ubody) = @$r;
    if ($g ne $group) { print "[$g]\n"; $group = $g }
    my $m = $res{$label};
    my ($ratio, $net, $mark) = ('', '', '');
    if ($key eq 'small') {
        $ratio = $m->{med} / $xs;
        $net = ($xs - $empty) > 0 ? ($m->{med} - $empty) / ($xs - $empty) : 0;
        $mark = $ratio <= 1.5 ? 'ok' : 'MISS (target <= 1.5x XS call)';
    }
    elsif ($key eq 'readfast64k') {
        $ratio = $m->{med} / $read64k;
        $net = ($read64k - $empty) > 0 ? ($m->{med} - $empty) / ($read64k - $empty) : 0;
        $mark = $ratio <= 0.6 ? 'ok' : 'MISS (target <= 0.6x read 64 KiB)';
    }
    push @miss, $label if $mark =~ /MISS/;
    my $u = defined $ubody && $uwsgi{$ubody} ? sprintf('%9.1f', $uwsgi{$ubody}{med}) : '';
    printf "  %-*s %9.1f %9.1f %9.1f %7s %6s  %-9s %s\n", $W - 2, $label, $m->{med}, $m->{min}, $m->{max},
        ($ratio eq '' ? '' : sprintf('%.2f', $ratio)), ($net eq '' ? '' : sprintf('%.2f', $net)), $u, $mark;
}

# --- 2-process contention ---------------------------------------------------
my $PER = 200_000;
print "\n2-process contention: 2 forked processes x $PER increments of one shared counter, started together\n";
printf "%-64s %8s %10s %10s %6s %9s  %s\n", 'method', 'wall s', 'final', 'expected', 'exact', 'ns/incr', 'target';
print '-' x 132, "\n";

my @contended = (
    [ 'SharedArea uwsgi::sharedarea_inc64', sub { uwsgi::sharedarea_write64(0, 256, 0) },
      sub { uwsgi::sharedarea_inc64(0, 256) for 1 .. $PER }, sub { uwsgi::sharedarea_read64(0, 256) }, 150, 5 ],
    [ 'Cache::FastMmap get_and_set (raw_values)', sub { $CFM->set('ctr', 0) },
      sub { $CFM->get_and_set('ctr', sub { $_[1] + 1 }) for 1 .. $PER }, sub { $CFM->get('ctr') }, undef, 1 ],
    [ 'File::Map anonymous + flock(EX/UN) on a lock file', sub { substr($MAP, 1024, 8) = pack 'q', 0 },
      sub {
          open my $lk, '>>', "$TMP/flock" or die "lock file: $!";    # opened per process: flock needs its own description
          for (1 .. $PER) {
              flock $lk, LOCK_EX;
              substr($MAP, 1024, 8) = pack 'q', unpack('q', substr($MAP, 1024, 8)) + 1;
              flock $lk, LOCK_UN;
          }
      },
      sub { unpack 'q', substr($MAP, 1024, 8) }, undef, 3 ],
);
for my $c (@contended) {
    my ($label, $init, $work, $final, $target, $reps) = @$c;
    my $exp = 2 * $PER;
    my (@walls, $got, $exact);
    $exact = 'yes';
    for (1 .. $reps) {    # median wall of $reps runs; every run must be exact
        $init->();
        my ($w, $ok) = contend($work);
        push @walls, $w;
        $got = $final->();
        $exact = 'NO' unless $ok && defined $got && $got == $exp;
    }
    @walls = sort { $a <=> $b } @walls;
    my $wall = $walls[ $#walls / 2 ];
    $label .= " [median of $reps]" if $reps > 1;
    my $ns = $wall * 1e9 / $exp;
    my $mark = '';
    if (defined $target) {
        $mark = ($ns <= $target && $exact eq 'yes') ? "ok (<= $target ns, exact)" : "MISS (target <= $target ns, exact)";
        push @miss, $label if $mark =~ /MISS/;
    }
    printf "%-64s %8.3f %10s %10d %6s %9.1f  %s\n", $label, $wall, defined $got ? $got : 'undef', $exp, $exact, $ns, $mark;
}

# --- own counters: do processes on different integers run side by side? -----
my $OWN = 4_000_000;
print "\nOwn counters: each process bumps its own 64-bit counter (its own cache line) in one area, $OWN each\n";
printf "%-64s %8s %12s %6s  %s\n", 'run', 'wall s', 'incr/s', 'exact', 'scaling';
print '-' x 132, "\n";
{
    my %rate;
    for my $n (1, 2) {
        my @walls;
        my $exact = 'yes';
        for (1 .. 5) {
            uwsgi::sharedarea_write64(0, 512 + 64 * $_, 0) for 0 .. 1;
            my ($w, $ok) = contend(sub { my $pos = 512 + 64 * $_[0]; uwsgi::sharedarea_inc64(0, $pos) for 1 .. $OWN }, $n);
            push @walls, $w;
            for my $i (0 .. $n - 1) {
                $exact = 'NO' unless $ok && uwsgi::sharedarea_read64(0, 512 + 64 * $i) == $OWN;
            }
        }
        @walls = sort { $a <=> $b } @walls;
        my $wall = $walls[ $#walls / 2 ];
        $rate{$n} = $n * $OWN / $wall;
        my $mark = '';
        if ($n == 2) {
            my $x = $rate{2} / $rate{1};
            $mark = sprintf '%.2fx one process %s', $x, ($x >= 1.6 && $exact eq 'yes') ? 'ok (>= 1.6x, exact)' : 'MISS (target >= 1.6x, exact)';
            push @miss, 'own counters, 2 processes' if $mark =~ /MISS/;
        }
        printf "%-64s %8.3f %12.0f %6s  %s\n", "SharedArea uwsgi::sharedarea_inc64, $n process" . ($n > 1 ? 'es' : '') . ' [median of 5]',
            $wall, $rate{$n}, $exact, $mark;
    }
}

printf "\n%s\ntotal bench time %.0f s\n", (@miss ? 'MISSED TARGETS: ' . join('; ', @miss) : 'all targets met'), time - $T_START;
exit 0;

# ---------------------------------------------------------------------------
# Forks $n (default 2) workers that wait for a common start signal, runs
# $work->($index) in each, returns (wall seconds from the signal to the last
# exit, all exited 0).
sub contend {
    my ($work, $n) = @_;
    $n //= 2;
    pipe my $go_r, my $go_w or die "pipe: $!";
    my @kids;
    for my $index (0 .. $n - 1) {
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            close $go_w;
            sysread $go_r, my $b, 1;    # wait for the start signal (EOF)
            my $ok = eval { $work->($index); 1 };
            _exit($ok ? 0 : 1);
        }
        push @kids, $pid;
    }
    close $go_r;
    select undef, undef, undef, 0.05;    # both are waiting on the pipe
    my $t0 = time;
    close $go_w;                          # EOF releases both at once
    my $ok = 1;
    local $SIG{ALRM} = sub { kill 'KILL', @kids; die "perl-bench: contended run exceeded 120 s\n" };
    alarm 120;
    for (@kids) { waitpid $_, 0; $ok = 0 if $? }
    alarm 0;
    return (time - $t0, $ok);
}

sub _loadavg {
    open my $fh, '<', '/proc/loadavg' or return '?';
    my ($l1, $l5, $l15) = split ' ', scalar <$fh>;
    return "$l1 $l5 $l15";
}

sub _ncpu {
    open my $fh, '<', '/proc/cpuinfo' or return 0;
    return scalar grep { /^processor\s*:/ } <$fh>;
}

# Runs the uWSGI-comparable loops inside a real uWSGI worker (--sharedarea 32)
# through a tiny PSGI app that uses the very same measure_loop.
sub measure_in_uwsgi {
    require SharedAreaTest::Proc;
    SharedAreaTest::Proc->import(qw(uwsgi_psgi_available start_uwsgi stop_server http_get));
    die "uWSGI with the psgi plugin is not installed\n" unless uwsgi_psgi_available();
    my @bodies = map { $_->[4] } grep { defined $_->[4] } @rows;
    my $list = join ",\n", map { my $b = $_; $b =~ s/'/\\'/g; "    '$b'" } @bodies;
    my $app = "$TMP/bench-uwsgi.psgi";
    open my $fh, '>', $app or die "cannot write $app: $!\n";
    print {$fh} <<"PSGI";
package main;
use strict;
use warnings;
use Time::HiRes ();
use Scalar::Util ();
our (\$x, \$S8, \$S64K) = (undef, 'abcdefgh', 'x' x 65536);
$MEASURE_SRC
my \@bodies = (
$list
);
my \$app = sub {
    my (\$env) = \@_;
    return [200, ['Content-Type' => 'text/plain'], ["ok\\n"]] unless \$env->{PATH_INFO} eq '/bench';
    uwsgi::sharedarea_write(0, 0, \$S64K);
    my \$out = '';
    for my \$b (\@bodies) {
        my \$m = measure_loop(\$b, $opt{reps}, $opt{secs});
        \$out .= join("\\t", \$b, \$m->{med}, \$m->{min}, \$m->{max}) . "\\n";
    }
    return [200, ['Content-Type' => 'text/plain'], [\$out]];
};
PSGI
    close $fh;
    my $srv = start_uwsgi(app => $app, processes => 1, sharedarea => '32', dir => $TMP);
    my ($st, $body) = eval { http_get($srv->{port}, '/bench', timeout => 120) };
    my $err = $@;
    stop_server($srv);
    die $err if $err;
    die "uWSGI bench request answered $st\n" unless $st eq '200';
    my %u;
    for (split /\n/, $body) {
        my ($b, $med, $min, $max) = split /\t/;
        $u{$b} = { med => $med, min => $min, max => $max };
    }
    return %u;
}
