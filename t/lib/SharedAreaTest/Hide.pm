package SharedAreaTest::Hide;

# Loaded with PERL5OPT=-MSharedAreaTest::Hide: makes the modules named in
# SHAREDAREA_TEST_HIDE (space-separated) fail to load, as on a machine that
# does not have them, so a full machine can run the tests the way a CPAN
# tester's does. SharedAreaTest::Proc's have_module/find_program read the same
# variable (program names in it count as not installed).

use strict;
use warnings;

my %hidden;
for my $name (split ' ', $ENV{SHAREDAREA_TEST_HIDE} // '') {
    (my $file = "$name.pm") =~ s{::}{/}g;
    $hidden{$file} = $name;
}

unshift @INC, sub {
    my (undef, $file) = @_;
    die "Can't locate $file in \@INC (hidden by SHAREDAREA_TEST_HIDE: $hidden{$file} is not installed)\n"
        if $hidden{$file};
    return;
};

1;
