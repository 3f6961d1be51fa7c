# The module loads, installs every uWSGI name into package uwsgi (the
# functions of uwsgi-functions.tsv, the one table the POD and the XS's names,
# usages and direct calls are checked against), and starts with no area when
# UWSGI_SHAREDAREA is not set.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedAreaTest::Functions qw(uwsgi_functions shape_args);

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
BEGIN { use_ok('SharedArea') or BAIL_OUT('SharedArea does not load') }

is(SharedArea::abi_version(), 1, 'the linked core speaks ABI version 1');
is(SharedArea::count(), 0, 'no area before one is created');

# The one table of the uWSGI functions is uwsgi-functions.tsv (read by
# SharedAreaTest::Functions). Every other place that names them is checked
# against it here, so that none can drift from it: the list that installs them
# (@SharedArea::UWSGI_FUNCTIONS), the POD (FUNCTIONS IN PACKAGE uwsgi: names and
# arguments), and in the XS, per name, its ALIAS entry (an XSUB of that name),
# its usage text, the name its errors carry, whether it is called directly
# (perl/direct_calls.h), and for the older names, the same answers as the name
# they stand for (the XS's ALIAS index tables).
my @table = uwsgi_functions();
my @perl  = grep { $_->{perl} eq 'yes' } @table;
my %row   = map { $_->{name} => $_ } @perl;

is_deeply([sort @SharedArea::UWSGI_FUNCTIONS], [sort map { $_->{name} } @perl],
          'the list of uWSGI names (@SharedArea::UWSGI_FUNCTIONS) is the table\'s Perl names');
is(scalar(@perl), 29, '... 29 names');

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
is_deeply([sort @pod_names], [sort keys %row], 'the POD documents the table\'s Perl names');
is_deeply({ map { $_ => $pod_shape{$_} } grep { $row{$_} } @pod_names },
          { map { $_ => $row{$_}{args} } grep { exists $pod_shape{$_} } keys %row },
          '... each with the table\'s arguments');
{
    no strict 'refs';
    my @unlisted = grep { /^sharedarea_/ && defined &{"SharedArea::$_"} && !$row{$_} } sort keys %SharedArea::;
    is("@unlisted", '', 'every sharedarea_* function of the XS is in the table');
}

# Direct calls: the table's, unless turned off at load or at build time.
my $direct_built = defined SharedArea::_calls_directly(\&SharedArea::init);
my $direct_on    = $direct_built && !$ENV{SHAREDAREA_NO_DIRECT_CALLS};
ok(!SharedArea::_calls_directly(\&SharedArea::init), 'SharedArea::init is not called directly');
is(join(' ', map { $_->{name} } grep { $_->{direct} eq 'yes' && grep { $_ eq 'buf' } @{ $_->{params} } } @perl),
   '', 'the table calls no function directly that writes into an argument (buf): a direct call keeps none');

require B;
for my $r (@perl) {
    my $name = $r->{name};
    no strict 'refs';
    ok(defined &{"uwsgi::$name"}, "uwsgi::$name is installed");
    is(\&{"uwsgi::$name"}, \&{"SharedArea::$name"}, "uwsgi::$name is SharedArea's");
    ok(B::svref_2object(\&{"SharedArea::$name"})->XSUB, "... an XSUB (its XS entry or ALIAS)");
    # Its usage names it, with the table's arguments.
    ok(!eval { &{"uwsgi::$name"}((0) x 9); 1 }, "$name with 9 arguments dies");
    my ($shape) = $@ =~ /^Usage: uwsgi::\Q$name\E\(([^)]*)\) at /;
    is($shape, $r->{args}, "... its usage names it, with the table's arguments");
    # Its errors name it.
    ok(!eval { &{"uwsgi::$name"}(shape_args($r, -1, $r->{required})); 1 }, "$name on area -1 dies");
    is(ref $@ && $@->function, $name, "... naming $name");
    SKIP: {
        skip 'direct calls are not compiled in (DEFINE=-DSHAREDAREA_NO_DIRECT_CALLS)', 1 unless $direct_built;
        is(SharedArea::_calls_directly(\&{"SharedArea::$name"}) ? 'yes' : 'no',
           $direct_on ? $r->{direct} : 'no',
           $direct_on ? "... called directly as the table says ($r->{direct})"
                      : '... not called directly (SHAREDAREA_NO_DIRECT_CALLS)');
    }
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

# An older name answers as the name it stands for: the same results and the
# same bytes changed, with every argument and with the optional ones left out.
for my $r (grep { $_->{same_as} ne '-' } @perl) {
    my $orig = $row{ $r->{same_as} };
    for my $n (sort { $a <=> $b } keys %{ { map { $_ => 1 } $r->{required}, scalar @{ $r->{params} } } }) {
        my (@got, @bytes);
        for my $f ($r->{name}, $orig->{name}) {
            my $id = SharedArea::init('1');
            uwsgi::sharedarea_write($id, 0, join '', map { chr((0x81 + 37 * $_) % 256) } 0 .. 63);
            no strict 'refs';
            push @got, [ &{"uwsgi::$f"}(shape_args($r, $id, $n)) ];
            push @bytes, uwsgi::sharedarea_read($id, 0, 64);
        }
        is_deeply($got[0], $got[1], "$r->{name} with $n arguments returns what $orig->{name} returns");
        is($bytes[0], $bytes[1], "... and leaves the same bytes");
    }
}

done_testing();
