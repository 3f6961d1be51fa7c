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

my $id = SharedArea::init('1');
is($id, 0, 'the first area is 0');
is(SharedArea::count(), 1, 'count() counts it');

done_testing();
