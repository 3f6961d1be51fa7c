#!/usr/bin/perl
# A name= area shared by unrelated processes: a Starman app that is NOT
# preloaded (each worker attaches to the named object itself) and separately
# started perl programs (fork + exec of $^X, so nothing is inherited).
#   * the outside process writes, every worker reads it;
#   * the workers increment, the outside process sees the exact count;
#   * an outside process and the workers increment one counter at the same
#     time: the total is exact (the lock lives inside the named object).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use SharedAreaTest::Proc qw(require_blib tmpdir write_file start_starman stop_server http_get
    run_clients guard_test spawn_perl finish_perl run_perl slurp);
use Time::HiRes qw(time sleep);

SharedAreaTest::Proc::needs(programs => ['starman'], modules => ['Starman']);
require_blib();
guard_test(240);

my $name = sprintf 'satest86-%d-%d', $$, int(rand 1e9);
my $spec = "name=$name,size=8192";
my $shm  = "/dev/shm/$name";
END { unlink $shm if defined $shm }    # shm_unlink: on Linux, POSIX shm objects live in /dev/shm
ok(!-e $shm, "no object $name exists before the test");

my $dir = tmpdir();
my $app = write_file("$dir/named.psgi", <<'PSGI');
use strict;
use warnings;
use SharedArea $ENV{SATEST_SPEC};

my $app = sub {
    my ($env) = @_;
    my $path = $env->{PATH_INFO};
    my $body = eval {
        return join ' ', $$, uwsgi::sharedarea_read64(0, 0), uwsgi::sharedarea_read(0, 100, 24) if $path eq '/read';
        return join ' ', $$, uwsgi::sharedarea_inc64(0, 8)  if $path eq '/inc';
        return join ' ', $$, uwsgi::sharedarea_inc64(0, 16) if $path eq '/inc2';
        return join ' ', map { uwsgi::sharedarea_read64(0, $_) } 0, 8, 16 if $path eq '/get';
        return uwsgi::sharedarea_write64(0, 24, 1) if $path eq '/stop';
        return "ok $$";
    };
    return [ 500, [ 'Content-Type' => 'text/plain' ], ["died: $@"] ] unless defined $body;
    return [ 200, [ 'Content-Type' => 'text/plain', 'Content-Length' => length $body ], [$body] ];
};
PSGI

# The outside process creates the object and writes first.
{
    my ($st, $out, $err) = run_perl(30, <<'PERL', $spec);
use strict; use warnings;
use SharedArea;
my $id = SharedArea::init($ARGV[0]);
die "expected id 0, got $id\n" unless $id == 0;
uwsgi::sharedarea_write64(0, 0, 123456789012);
uwsgi::sharedarea_write(0, 100, sprintf '%-24s', "outside pid $$");
print "wrote $$\n";
PERL
    is($st, 0, 'outside process created the named area and wrote to it') or diag("stderr: $err");
    ok(-e $shm, "the POSIX shm object $shm exists");
}

my $srv = start_starman(app => $app, workers => 3, preload => 0, dir => $dir,
    env => { SATEST_SPEC => $spec }, unset_env => ['UWSGI_SHAREDAREA']);

# Every worker attached by itself and reads what the outside process wrote.
{
    my @res = run_clients(port => $srv->{port}, clients => 4, requests => 40, path => sub { '/read' }, timeout => 60);
    my %pids;
    my @wrong = grep { $_->[1] ne '200' || $_->[2] !~ /^(\d+) 123456789012 outside pid \d+\s*$/ } @res;
    is(scalar @wrong, 0, 'every worker reads the outside process\'s 64-bit value and bytes')
        or diag(join "\n", map { "$_->[1] $_->[2]" } @wrong[ 0 .. ($#wrong < 3 ? $#wrong : 3) ]);
    $pids{ (split ' ', $_->[2])[0] }++ for @res;
    cmp_ok(scalar keys %pids, '>', 1, 'more than one non-preloaded worker attached to the named area');
}

# The workers increment; a new outside process sees the exact count.
{
    my $n = 500;
    my @res = run_clients(port => $srv->{port}, clients => 8, requests => $n, path => sub { '/inc' }, timeout => 90);
    is(scalar(grep { $_->[1] eq '200' } @res), $n, "$n increments through the workers answered 200");
    my ($st, $out, $err) = run_perl(30, <<'PERL', $spec);
use strict; use warnings;
use SharedArea;
SharedArea::init($ARGV[0]);
print uwsgi::sharedarea_read64(0, 8), "\n";
PERL
    is($st, 0, 'outside reader ran') or diag("stderr: $err");
    is($out, "$n\n", "the outside process sees exactly $n increments made by the workers");
}

# Both sides increment one counter at the same time: exact total. The outside
# process keeps incrementing until the test raises a stop flag (pos 24) after
# the last request, so the two really overlap; it reports how many it did.
{
    my $n_req = 1000;
    my $h = spawn_perl(<<'PERL', $spec);
use strict; use warnings;
use SharedArea;
use Time::HiRes qw(time);
SharedArea::init($ARGV[0]);
$| = 1;
print "ready\n";
my ($n, $end) = (0, time + 60);
while (uwsgi::sharedarea_read64(0, 24) == 0 && time < $end) {
    uwsgi::sharedarea_inc64(0, 16) for 1 .. 100;
    $n += 100;
}
print "$n\n";
PERL
    my $deadline = time + 20;
    sleep 0.01 until (slurp($h->{out}) // '') =~ /ready/ || time > $deadline;
    my @res = run_clients(port => $srv->{port}, clients => 8, requests => $n_req, path => sub { '/inc2' }, timeout => 90);
    my ($st_stop) = http_get($srv->{port}, '/stop');
    is($st_stop, 200, 'stop flag raised');
    my ($st, $out, $err) = finish_perl($h, 60);
    is($st, 0, 'outside process incremented meanwhile') or diag("stderr: $err");
    my ($outside) = $out =~ /^(\d+)$/m;
    note("outside process: $out");
    cmp_ok($outside || 0, '>', 0, "outside process did @{[ $outside || 0 ]} increments");
    is(scalar(grep { $_->[1] eq '200' } @res), $n_req, "$n_req concurrent increments through the workers answered 200");
    my (undef, $body) = http_get($srv->{port}, '/get');
    my (undef, $c8, $c16) = split ' ', $body;
    is($c16, ($outside || 0) + $n_req, 'concurrent increments from an outside process and the workers: exact total');
}

# The outside process writes again; the workers see the new value at once.
{
    my ($st, undef, $err) = run_perl(30, <<'PERL', $spec);
use strict; use warnings;
use SharedArea;
SharedArea::init($ARGV[0]);
uwsgi::sharedarea_write64(0, 0, -42);
PERL
    is($st, 0, 'outside process rewrote the value') or diag("stderr: $err");
    my @res = run_clients(port => $srv->{port}, clients => 3, requests => 12, path => sub { '/read' }, timeout => 60);
    is(scalar(grep { $_->[1] eq '200' && $_->[2] =~ /^\d+ -42 / } @res), 12, 'every worker reads the rewritten value -42');
}

stop_server($srv);
unlink $shm;
ok(!-e $shm, 'the named object is removed after the test');
done_testing();
