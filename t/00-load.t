# The module loads, installs every uWSGI name into package uwsgi, and starts
# with no area when UWSGI_SHAREDAREA is not set.
use strict;
use warnings;
use Test::More;

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
BEGIN { use_ok('SharedArea') or BAIL_OUT('SharedArea does not load') }

is(SharedArea::abi_version(), 1, 'the linked core speaks ABI version 1');
is(SharedArea::count(), 0, 'no area before one is created');

my @names = qw(
    sharedarea_read sharedarea_readfast sharedarea_write
    sharedarea_read8 sharedarea_read16 sharedarea_read32 sharedarea_read64
    sharedarea_write8 sharedarea_write16 sharedarea_write32 sharedarea_write64
    sharedarea_inc8 sharedarea_inc16 sharedarea_inc32 sharedarea_inc64
    sharedarea_dec8 sharedarea_dec16 sharedarea_dec32 sharedarea_dec64
    sharedarea_wait sharedarea_update sharedarea_rlock sharedarea_wlock sharedarea_unlock
    sharedarea_readbyte sharedarea_writebyte sharedarea_readlong sharedarea_writelong
    sharedarea_inclong
);
for my $name (@names) {
    no strict 'refs';
    ok(defined &{"uwsgi::$name"}, "uwsgi::$name is installed");
    is(\&{"uwsgi::$name"}, \&{"SharedArea::$name"}, "uwsgi::$name is SharedArea's");
}
is_deeply([sort @SharedArea::UWSGI_FUNCTIONS], [sort @names], 'the list of names is complete');

for my $name (qw(init count info set_used honour_used updates abi_version _ws_send _ws_send_from_area)) {
    no strict 'refs';
    ok(defined &{"SharedArea::$name"}, "SharedArea::$name exists");
}

# use SharedArea also brings the websocket functions when that module is there
SKIP: {
    skip 'SharedArea::WebSocket is not in this tree', 2
        unless grep { !ref && -f "$_/SharedArea/WebSocket.pm" } @INC;
    ok($INC{'SharedArea/WebSocket.pm'}, 'SharedArea::WebSocket was loaded');
    my @ws = grep { no strict 'refs'; !defined &{"uwsgi::$_"} } qw(
        websocket_handshake websocket_send websocket_send_binary
        websocket_send_from_sharedarea websocket_send_binary_from_sharedarea
        websocket_recv websocket_recv_nb connection_fd);
    is("@ws", '', 'every uwsgi::websocket_* name is installed');
}

my $id = SharedArea::init('1');
is($id, 0, 'the first area is 0');
is(SharedArea::count(), 1, 'count() counts it');

done_testing();
