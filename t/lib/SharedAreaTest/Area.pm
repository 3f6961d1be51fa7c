package SharedAreaTest::Area;

# Helpers for the Perl tests that run in one process: an area holding a known
# pattern, and the error a piece of code dies with.

use strict;
use warnings;

use Exporter qw(import);

our @EXPORT_OK = qw(err_of lettered_area);

# The exception CODE dies with, as a string ('' when it returns).
sub err_of {
    my ($code) = @_;
    local $@;
    return eval { $code->(); 1 } ? '' : "$@";
}

# A new area of SIZE bytes holding "ABC...XYZABC..."; returns its id and those bytes.
sub lettered_area {
    my ($size) = @_;
    my $id   = SharedArea::init("size=$size");
    my $data = join '', map { chr(65 + $_ % 26) } 0 .. $size - 1;
    uwsgi::sharedarea_write($id, 0, $data);
    return ($id, $data);
}

1;
