# make install-c PREFIX=... installs the C library as a C user gets it: the
# header, libsharedarea.so.<major> (SONAME) and its links, the static library,
# sharedarea.pc and the sharedarea command; a program builds with
#   cc prog.c $(pkg-config --cflags --libs sharedarea)
# against that copy, and runs, shared and static.
use strict;
use warnings;
use FindBin;
use File::Spec;
use File::Temp qw(tempdir);
use Test::More;

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea ();

my $root = File::Spec->rel2abs("$FindBin::Bin/..");
-e "$root/Makefile" or plan skip_all => 'no Makefile (run perl Makefile.PL first)';
for my $tool (qw(make cc pkg-config ldd)) {
    system("command -v $tool >/dev/null 2>&1") == 0
        or plan skip_all => "$tool is not installed (Debian: apt-get install "
                          . ({ 'pkg-config' => 'pkgconf', make => 'make', cc => 'gcc', ldd => 'libc-bin' }->{$tool}) . ')';
}
alarm 600;

my $version = $SharedArea::VERSION;
my ($major) = $version =~ /^(\d+)/;
my $prefix = tempdir('sa-install-c-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $out = `cd "$root" && make -s install-c PREFIX="$prefix" 2>&1`;
is($?, 0, "make install-c PREFIX=$prefix") or diag $out;

my $lib = "$prefix/lib";
ok(-f "$prefix/include/sharedarea.h", 'the header');
ok(-f "$lib/libsharedarea.so.$version", "libsharedarea.so.$version");
is(readlink("$lib/libsharedarea.so.$major"), "libsharedarea.so.$version", "libsharedarea.so.$major links to it");
is(readlink("$lib/libsharedarea.so"), "libsharedarea.so.$major", 'libsharedarea.so (for -l) links to the SONAME');
ok(-f "$lib/libsharedarea.a", 'the static library');
ok(-f "$lib/pkgconfig/sharedarea.pc", 'sharedarea.pc');
ok(-x "$prefix/bin/sharedarea", 'the sharedarea command');
like(`"$prefix/bin/sharedarea" --help`, qr/^Usage:/m, 'the installed command runs');

local $ENV{PKG_CONFIG_PATH} = "$lib/pkgconfig";
chomp(my $modversion = `pkg-config --modversion sharedarea`);
is($modversion, $version, 'pkg-config --modversion is the one version number');

my $dir = tempdir('sa-prog-XXXXXX', TMPDIR => 1, CLEANUP => 1);
open my $fh, '>', "$dir/prog.c" or die "$dir/prog.c: $!";
print {$fh} <<"C";
#include <sharedarea.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    char spec[64], name[48];
    int64_t v = 0;
    int32_t id = sharedarea_init("1");
    if (id < 0 || sharedarea_abi_version() != SHAREDAREA_ABI_VERSION)
        return 2;
    if (sharedarea_inc64(id, 0, 41, &v) != SHAREDAREA_OK || sharedarea_inc64(id, 0, 1, &v) != SHAREDAREA_OK)
        return 3;
    snprintf(name, sizeof name, "sa-install-c-%ld", (long)getpid());
    snprintf(spec, sizeof spec, "name=%s,size=4096", name);
    if (sharedarea_init(spec) < 0 || sharedarea_unlink(name) != SHAREDAREA_OK)
        return 4;
    printf("value %lld\\n", (long long)v);
    return 0;
}
C
close $fh;

my $cflags = `pkg-config --cflags --libs sharedarea`;
chomp $cflags;
$out = `cc -std=c99 -Wall -Wextra -Werror -o "$dir/prog" "$dir/prog.c" $cflags 2>&1`;
is($?, 0, "cc -std=c99 prog.c \$(pkg-config --cflags --libs sharedarea): $cflags") or diag $out;
{
    local $ENV{LD_LIBRARY_PATH} = $lib;
    is(`"$dir/prog"`, "value 42\n", 'the program runs against the installed shared library');
    like(`ldd "$dir/prog"`, qr{libsharedarea\.so\.\Q$major\E => \Q$lib\E/libsharedarea\.so\.\Q$major\E},
        "it loads libsharedarea.so.$major (its SONAME) from the prefix");
}

# Static: the archive plus Libs.private.
my $static = `pkg-config --static --libs sharedarea`;
chomp $static;
$static =~ s/(^|\s)-lsharedarea(?=\s|$)/$1-l:libsharedarea.a/;
$out = `cc -std=c99 -Wall -Werror -o "$dir/prog-static" "$dir/prog.c" \$(pkg-config --cflags sharedarea) $static 2>&1`;
is($?, 0, "static link: $static") or diag $out;
is(`"$dir/prog-static"`, "value 42\n", 'the statically linked program runs');
unlike(`ldd "$dir/prog-static"`, qr/libsharedarea/, 'and needs no libsharedarea.so');

done_testing;
