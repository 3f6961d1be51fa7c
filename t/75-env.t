# Areas from UWSGI_SHAREDAREA and from `use SharedArea @specs`, and the rule
# that uwsgi:: functions that already exist are not replaced. Each case runs
# in a fresh perl, since areas are created when the module loads.
use strict;
use warnings;
use Test::More;
use File::Spec;

alarm 120;

# Runs perl CODE with the module from blib and UWSGI_SHAREDAREA = ENV
# (undef: unset); returns (exit status, stdout+stderr).
sub run_perl {
    my ($env, $code) = @_;
    local $ENV{UWSGI_SHAREDAREA} = $env;
    delete $ENV{UWSGI_SHAREDAREA} unless defined $env;
    my $pid = open my $fh, '-|' // die "fork: $!";
    if (!$pid) {
        open STDERR, '>&', \*STDOUT or die;
        exec $^X, '-Mblib', '-e', $code or die "exec: $!";
    }
    local $/;
    my $out = <$fh>;
    close $fh;
    return ($?, $out);
}

my $show = 'print join(",", SharedArea::count(), map { SharedArea::info($_)->{size} } 0 .. SharedArea::count() - 1), "\n"';
my $page = do {
    my (undef, $out) = run_perl(undef, 'use POSIX; print POSIX::sysconf(POSIX::_SC_PAGESIZE())');
    $out;
};
like($page, qr/^\d+$/, "page size $page");

my ($st, $out) = run_perl(undef, "use SharedArea; $show");
is($st, 0, 'no UWSGI_SHAREDAREA') and is($out, "0\n", '... no area');

($st, $out) = run_perl('4', "use SharedArea; $show");
is($st, 0, 'UWSGI_SHAREDAREA=4') and is($out, '1,' . 4 * $page . "\n", '... one area of 4 pages');

($st, $out) = run_perl('1; size=8192 ;pages=3;', "use SharedArea; $show");
is($st, 0, 'several specs separated by ;') and is($out, '3,' . join(',', $page, 8192 > $page ? 8192 : $page, 3 * $page) . "\n", '... in order');

($st, $out) = run_perl('', "use SharedArea; $show");
is($out, "0\n", 'an empty UWSGI_SHAREDAREA creates nothing');

($st, $out) = run_perl('2', "use SharedArea '1', 'pages=3'; $show");
is($out, join(',', 3, 2 * $page, $page, 3 * $page) . "\n", 'the environment first, then the use list');

($st, $out) = run_perl(undef, "use SharedArea '1', 'pages=3'; $show");
is($out, join(',', 2, $page, 3 * $page) . "\n", 'use SharedArea LIST without the environment');

($st, $out) = run_perl('2', "use SharedArea; BEGIN { \$ENV{UWSGI_SHAREDAREA} = 9 } require SharedArea; $show");
is($out, join(',', 1, 2 * $page) . "\n", 'loading the module again creates nothing more');

($st, $out) = run_perl('2', 'use SharedArea; uwsgi::sharedarea_write(0, 0, "x") or die; print uwsgi::sharedarea_read(0, 0, 1), "\n"');
is($out, "x\n", 'the area from the environment is usable at once');

($st, $out) = run_perl('4;bogus=1', "use SharedArea; $show");
isnt($st, 0, 'a bad spec in UWSGI_SHAREDAREA makes loading fail');
like($out, qr/UWSGI_SHAREDAREA='4;bogus=1': SharedArea::init: invalid spec "bogus=1": unknown key "bogus"/,
     '... naming the variable, the spec and the problem');

($st, $out) = run_perl(undef, 'use SharedArea "abc"; print "loaded\n"');
isnt($st, 0, 'a bad spec in the use list fails');
like($out, qr/SharedArea::init: invalid spec "abc"/, '... with the problem');

($st, $out) = run_perl(undef, <<'CODE');
BEGIN { no warnings 'once'; *uwsgi::sharedarea_read = sub { 'host' }; }
use SharedArea '1';
print uwsgi::sharedarea_read(0, 0, 1), "|", (defined &uwsgi::sharedarea_write ? 'added' : 'none'), "|", SharedArea::count(), "\n";
CODE
is($out, "host|none|1\n", 'inside a uWSGI host (uwsgi::sharedarea_read exists): nothing replaced, nothing added; SharedArea:: still works');

($st, $out) = run_perl('4', <<'CODE');
BEGIN { no warnings 'once'; *uwsgi::sharedarea_read = sub { 'host' }; }
use SharedArea;
print SharedArea::count(), "\n";
CODE
is($out, "0\n", 'inside a uWSGI host, UWSGI_SHAREDAREA (already uWSGI\'s) creates no area of ours');

($st, $out) = run_perl(undef, 'require SharedArea; print defined &uwsgi::sharedarea_inc64 ? "yes\n" : "no\n"');
is($out, "yes\n", 'require (without import) installs the names too');

done_testing();
