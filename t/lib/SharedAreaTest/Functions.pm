package SharedAreaTest::Functions;

# The one table of the uWSGI functions (uwsgi-functions.tsv at the top of the
# distribution), read for the tests that check every other list of them
# against it, and the argument lists its shapes give.

use strict;
use warnings;

use Carp qw(croak);
use File::Basename qw(dirname);
use File::Spec;
use Exporter qw(import);

our @EXPORT_OK = qw(uwsgi_functions shape_args);

# t/lib/SharedAreaTest/Functions.pm -> the distribution's top
our $TABLE = File::Spec->catfile(dirname(__FILE__), File::Spec->updir, File::Spec->updir,
                                 File::Spec->updir, 'uwsgi-functions.tsv');

my @FIELDS = qw(name args perl python direct same_as);

# The table's rows, in its order: hash references with the fields above
# (args as written, e.g. "id, pos[, len]"), plus
#   params    the argument names in order ([qw(id pos len)])
#   required  how many of them must be given (2)
# Dies, naming the line, on a row the table's own rules refuse.
sub uwsgi_functions {
    open my $fh, '<', $TABLE or croak "$TABLE: $!";
    my (@rows, %by_name);
    while (my $line = <$fh>) {
        chomp $line;
        next if $line =~ /^#/ || $line !~ /\S/;
        my $where = "$TABLE line $.";
        my @f = split /\t/, $line, -1;
        @f == @FIELDS or croak "$where: " . scalar(@f) . " fields, not " . scalar(@FIELDS);
        my %row;
        @row{@FIELDS} = @f;
        $row{name} =~ /^sharedarea_[a-z0-9]+$/ or croak "$where: name '$row{name}'";
        !$by_name{$row{name}}++ or croak "$where: $row{name} is listed twice";
        for my $lang (qw(perl python)) {
            $row{$lang} =~ /^(?:yes|no)$/ or croak "$where: $lang is '$row{$lang}', not yes or no";
        }
        $row{perl} eq 'yes' || $row{python} eq 'yes' or croak "$where: $row{name} is in neither language";
        my $direct_ok = $row{perl} eq 'yes' ? qr/^(?:yes|no)$/ : qr/^-$/;
        $row{direct} =~ $direct_ok or croak "$where: direct is '$row{direct}' (yes/no for Perl's, - otherwise)";
        $row{same_as} =~ /^(?:-|sharedarea_[a-z0-9]+)$/ or croak "$where: same_as '$row{same_as}'";
        @row{qw(params required)} = _shape($row{args}, $where);
        push @rows, \%row;
    }
    my %row = map { $_->{name} => $_ } @rows;
    for my $r (grep { $_->{same_as} ne '-' } @rows) {
        my $orig = $row{$r->{same_as}} or croak "$TABLE: $r->{name} is the same as $r->{same_as}, which is not listed";
        $orig->{same_as} eq '-' or croak "$TABLE: $r->{name}: $r->{same_as} is itself another name";
        for my $f (qw(args perl python direct)) {
            $r->{$f} eq $orig->{$f}
                or croak "$TABLE: $r->{name} ($f $r->{$f}) is not the same as $r->{same_as} ($f $orig->{$f})";
        }
    }
    return @rows;
}

# "id, pos[, len[, more]]" -> ([qw(id pos len more)], 2)
sub _shape {
    my ($args, $where) = @_;
    $args =~ /^id(?:, [a-z]+)*(?:\[, [a-z]+)*\]*$/ or croak "$where: args '$args'";
    my ($required) = $args =~ /^([^\[]*)/;
    my $opened = () = $args =~ /\[/g;
    my $closed = () = $args =~ /\]/g;
    $opened == $closed or croak "$where: args '$args': brackets do not match";
    my @params = $args =~ /([a-z]+)/g;
    my @req = $required =~ /([a-z]+)/g;
    return (\@params, scalar @req);
}

# The arguments of one call of function ROW on area ID, the first N of its
# parameters (all when N is undef); values chosen so that each width and
# signedness gives a different answer; 'buf' gets a fresh variable each call.
no warnings qw(portable);    # a 64-bit value, written in hex
my %VALUE = (
    pos     => 3,
    len     => 5,
    value   => -0x7172737475767778,
    amount  => 0x1FF,
    data    => "x\x{e9}z",
    freq    => 0,
    timeout => 0,
);
use warnings qw(portable);

sub shape_args {
    my ($row, $id, $n) = @_;
    my @p = @{ $row->{params} };
    $n //= @p;
    my @args;
    for my $p (@p[0 .. $n - 1]) {
        if    ($p eq 'id')        { push @args, $id }
        elsif ($p eq 'buf')       { push @args, my $buf = '' }
        elsif (exists $VALUE{$p}) { push @args, $VALUE{$p} }
        else                      { croak "shape_args: no value for argument '$p' of $row->{name}" }
    }
    return @args;
}

1;
