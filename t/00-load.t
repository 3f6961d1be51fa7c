# The module loads, installs every uWSGI name into package uwsgi (the one
# list, checked against the POD and the XS's names and usages), and starts
# with no area when UWSGI_SHAREDAREA is not set.
use strict;
use warnings;
use Test::More;

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
BEGIN { use_ok('SharedArea') or BAIL_OUT('SharedArea does not load') }

is(SharedArea::abi_version(), 1, 'the linked core speaks ABI version 1');
is(SharedArea::count(), 0, 'no area before one is created');

# The one list of uWSGI names is @SharedArea::UWSGI_FUNCTIONS. The POD
# (FUNCTIONS IN PACKAGE uwsgi) documents each with its arguments, and the XS
# keeps, per name, an ALIAS entry, a name for its errors and a usage: checked
# here against the list, so that none of them can drift from it.
my %pod_shape;    # name => "id, pos[, len]" as documented
my @pod_names;
{
    open my $fh, '<', $INC{'SharedArea.pm'} or die "$INC{'SharedArea.pm'}: $!";
    my $in = 0;
    while (my $line = <$fh>) {
        $in = $1 eq 'FUNCTIONS IN PACKAGE uwsgi' if $line =~ /^=head1 (.*)/;
        next unless $in;
        while ($line =~ /uwsgi::(sharedarea_\w+)\((\$id[^)]*)\)/g) {
            my ($name, $shape) = ($1, $2);
            $shape =~ tr/$//d;
            push @pod_names, $name unless exists $pod_shape{$name};
            $pod_shape{$name} //= $shape;
        }
        # "=head2 uwsgi::sharedarea_read8($id, $pos), read16, read32, read64":
        # the short names share the first one's arguments.
        if ($line =~ /^=head2 uwsgi::(sharedarea_\w+)\([^)]*\)((?:, \w+)+)\s*$/) {
            my $first = $1;
            for my $short ($2 =~ /(\w+)/g) {
                push @pod_names, "sharedarea_$short" unless exists $pod_shape{"sharedarea_$short"};
                $pod_shape{"sharedarea_$short"} //= $pod_shape{$first};
            }
        }
    }
}
is_deeply([sort @SharedArea::UWSGI_FUNCTIONS], [sort @pod_names],
          'the list of uWSGI names is the documented one');
is(scalar(@SharedArea::UWSGI_FUNCTIONS), 29, '... 29 names');
{
    no strict 'refs';
    my %listed = map { $_ => 1 } @SharedArea::UWSGI_FUNCTIONS;
    my @unlisted = grep { /^sharedarea_/ && defined &{"SharedArea::$_"} && !$listed{$_} } sort keys %SharedArea::;
    is("@unlisted", '', 'every sharedarea_* function of the XS is in the list');
}
require B;
for my $name (@SharedArea::UWSGI_FUNCTIONS) {
    no strict 'refs';
    ok(defined &{"uwsgi::$name"}, "uwsgi::$name is installed");
    is(\&{"uwsgi::$name"}, \&{"SharedArea::$name"}, "uwsgi::$name is SharedArea's");
    ok(B::svref_2object(\&{"SharedArea::$name"})->XSUB, "... an XSUB");
    # Its usage names it, with the documented arguments.
    ok(!eval { &{"uwsgi::$name"}((0) x 9); 1 }, "$name with 9 arguments dies");
    my ($shape) = $@ =~ /^Usage: uwsgi::\Q$name\E\(([^)]*)\) at /;
    is($shape, $pod_shape{$name}, "... its usage names it, with the documented arguments");
    # Its errors name it.
    my $buf = '';
    my @args = map { $_ eq 'buf' ? $buf : 0 } split /, /, ($pod_shape{$name} // 'id') =~ /^([^\[]*)/ ? $1 : 'id';
    $args[0] = -1;
    ok(!eval { &{"uwsgi::$name"}(@args); 1 }, "$name on area -1 dies");
    is(ref $@ && $@->function, $name, "... naming $name");
}

for my $name (qw(init count info set_used honour_used updates abi_version _ws_send _ws_send_from_area)) {
    no strict 'refs';
    ok(defined &{"SharedArea::$name"}, "SharedArea::$name exists");
}

# use SharedArea also brings the websocket functions (SharedArea::WebSocket)
ok($INC{'SharedArea/WebSocket.pm'}, 'SharedArea::WebSocket was loaded');
my @ws = grep { no strict 'refs'; !defined &{"uwsgi::$_"} } qw(
    websocket_handshake websocket_send websocket_send_binary
    websocket_send_from_sharedarea websocket_send_binary_from_sharedarea
    websocket_recv websocket_recv_nb connection_fd);
is("@ws", '', 'every uwsgi::websocket_* name is installed');

my $id = SharedArea::init('1');
is($id, 0, 'the first area is 0');
is(SharedArea::count(), 1, 'count() counts it');

done_testing();
