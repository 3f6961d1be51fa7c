# One version number everywhere (Cargo.toml, every Perl module, the C ABI's
# major version, the shared library's SONAME), man pages under the module
# names, and the files a distribution must carry.
use strict;
use warnings;
use FindBin;
use File::Spec;
use Test::More;

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea;

my $root = File::Spec->rel2abs("$FindBin::Bin/..");
open my $fh, '<', "$root/Cargo.toml" or plan skip_all => "no Cargo.toml at $root";
my ($cargo_version) = join('', <$fh>) =~ /^\[package\][^\[]*?^version\s*=\s*"([^"]+)"/ms;
close $fh;
ok(defined $cargo_version, "Cargo.toml has a version ($cargo_version)");

is($SharedArea::VERSION, $cargo_version, 'SharedArea $VERSION is the crate version');
# Every module of the distribution, read as MakeMaker reads it (without loading).
require ExtUtils::MakeMaker;
my @pm;
require File::Find;
File::Find::find({ no_chdir => 1, wanted => sub { push @pm, $_ if /\.pm\z/ } }, "$root/perl/lib");
for my $pm (sort @pm) {
    (my $rel = $pm) =~ s{^\Q$root\E/}{};
    is(MM->parse_version($pm), $cargo_version, "$rel: \$VERSION is $cargo_version");
}
# Their POD (the man pages) has no errors, and the main page the sections a CPAN
# reader looks for.
require Pod::Checker;
for my $pm (sort @pm) {
    (my $rel = $pm) =~ s{^\Q$root\E/}{};
    my $checker = Pod::Checker->new(-warnings => 0, -quiet => 1);
    $checker->parse_from_file($pm, \my $out);
    is($checker->num_errors, 0, "$rel: POD without errors");
}
# README's Layout names every top-level folder of the repository (in a git
# checkout; a distribution carries only some of them).
SKIP: {
    my @dirs = -e "$root/.git" ? `git -C '$root' ls-tree -d HEAD --name-only 2>/dev/null` : ();
    skip 'not a git checkout', 1 unless @dirs;
    chomp @dirs;
    open my $r, '<', "$root/README.md" or die "README.md: $!";
    my ($layout) = do { local $/; <$r> } =~ /^## Layout\n(.*?)^## /ms;
    my @missing = grep { ($layout // '') !~ /(?:^|\s)\Q$_\E\//m } @dirs;
    is("@missing", '', "README's Layout names every top-level folder (@dirs)");
}
{
    open my $pod, '<', "$root/perl/lib/SharedArea.pm" or die $!;
    my @heads = map { /^=head1 (.+)/ ? $1 : () } <$pod>;
    for my $h ('NAME', 'SYNOPSIS', 'DESCRIPTION', 'WHEN YOU OUTGROW ONE HOST', 'SEE ALSO', 'BUGS', 'AUTHOR', 'COPYRIGHT AND LICENSE') {
        ok((grep { $_ eq $h } @heads), "perldoc SharedArea has $h");
    }
}
my ($major) = $cargo_version =~ /^(\d+)\./;
is(SharedArea::abi_version(), $major, 'the major version is the C ABI version');

SKIP: {
    my $so = "$root/target/release/libsharedarea.so";
    -e $so or skip "no $so (cargo build --release)", 1;
    my $dyn = `readelf -d "$so" 2>/dev/null`;
    $? == 0 && length $dyn or skip 'readelf is not installed', 1;
    like($dyn, qr/\(SONAME\)\s+Library soname: \[libsharedarea\.so\.\Q$major\E\]/,
        "the shared library's SONAME is libsharedarea.so.$major");
}

SKIP: {
    my $man = "$root/blib/man3";
    -d $man or skip 'no blib/man3 (make did not build man pages)', 3;
    for my $page ('SharedArea', 'SharedArea::WebSocket', 'Plack::Middleware::SharedArea') {
        ok(-e "$man/$page.3pm", "man page $page.3pm (man $page)");
    }
}

for my $file (qw(Changes LICENSE Makefile.PL Cargo.toml Cargo.lock build.rs include/sharedarea.h)) {
    ok(-e "$root/$file", "the distribution has $file");
}
open my $lic, '<', "$root/LICENSE" or die "LICENSE: $!";
like(scalar(do { local $/; <$lic> }), qr/\AMIT License/, 'LICENSE is the MIT text (as Cargo.toml and META say)');
open my $ch, '<', "$root/Changes" or die "Changes: $!";
like(scalar(do { local $/; <$ch> }), qr/^\Q$cargo_version\E\s/m, "Changes has an entry for $cargo_version");

done_testing;
