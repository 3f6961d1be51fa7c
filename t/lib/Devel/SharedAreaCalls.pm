# A minimal debugger for t/16-direct-calls.t (perl -d:SharedAreaCalls):
# counts the calls perl routes through DB::sub, by sub name.
package Devel::SharedAreaCalls;
use strict;
use warnings;

package DB;    ## no critic (Modules::ProhibitMultiplePackages)
our %calls;
sub DB { }
sub sub {
    $calls{$DB::sub}++;
    no strict 'refs';
    return &$DB::sub;
}

1;
