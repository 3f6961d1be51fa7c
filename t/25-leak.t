# No memory is lost per call: 200k mixed calls, including ones that croak
# inside eval, grow the process by less than 2 MB.
use strict;
use warnings;
use Test::More;

BEGIN { delete $ENV{UWSGI_SHAREDAREA} }
use SharedArea;

plan skip_all => 'needs /proc/self/statm' unless -r '/proc/self/statm';
alarm 240;

my $id = SharedArea::init('4');
my $size = SharedArea::info($id)->{size};
uwsgi::sharedarea_write($id, 0, 'x' x 1000);
my $page = SharedArea::info($id)->{page_size};

sub rss {
    open my $fh, '<', '/proc/self/statm' or die $!;
    my (undef, $resident) = split ' ', scalar <$fh>;
    return $resident * $page;
}

my $buf = '';
my $wide = "\x{263A}";
my $latin = "\xE9" x 10;
utf8::upgrade($latin);
my @ops = (
    sub { uwsgi::sharedarea_read($id, 0, 100) },
    sub { uwsgi::sharedarea_read($id, $size - 10) },
    sub { uwsgi::sharedarea_readfast($id, 0, $buf, 500) },
    sub { uwsgi::sharedarea_write($id, 0, 'hello') },
    sub { uwsgi::sharedarea_write($id, 20, $latin) },
    sub { uwsgi::sharedarea_inc64($id, 64) },
    sub { uwsgi::sharedarea_dec32($id, 72, 3) },
    sub { uwsgi::sharedarea_write16($id, 80, -5) },
    sub { uwsgi::sharedarea_read8($id, 80) },
    sub { uwsgi::sharedarea_update($id) },
    sub { uwsgi::sharedarea_wlock($id); uwsgi::sharedarea_read64($id, 64); uwsgi::sharedarea_unlock($id) },
    sub { my $i = SharedArea::info($id) },
    sub { SharedArea::updates($id) },
    # croaking calls
    sub { eval { uwsgi::sharedarea_read($id, $size, 1) } },
    sub { eval { uwsgi::sharedarea_read($id, 0, 2**64) } },
    sub { eval { uwsgi::sharedarea_read($id, 'abc') } },
    sub { eval { uwsgi::sharedarea_read(-1, 0) } },
    sub { eval { uwsgi::sharedarea_read(99, 0) } },
    sub { eval { uwsgi::sharedarea_write($id, 0, $wide) } },
    sub { eval { uwsgi::sharedarea_write($id, $size - 1, 'abc') } },
    sub { eval { uwsgi::sharedarea_readfast($id, $size, $buf) } },
    sub { eval { uwsgi::sharedarea_write64($id, 0, 'x') } },
    sub { eval { uwsgi::sharedarea_inc64($id, $size - 3) } },
    sub { eval { uwsgi::sharedarea_unlock($id) } },
    sub { eval { uwsgi::sharedarea_wait($id, 0, -1) } },
    sub { eval { uwsgi::sharedarea_read($id) } },
    sub { eval { SharedArea::init('bogus') } },
);

# warm up: let perl's allocator and the core's thread-locals settle
for my $round (1 .. 2000) { $_->() for @ops }
my $start = rss();
my $calls = 0;
while ($calls < 200_000) {
    for my $op (@ops) { $op->(); $calls++ }
}
my $grown = rss() - $start;
diag(sprintf '%d calls: RSS grew by %d KB', $calls, $grown / 1024);
cmp_ok($grown, '<', 2 * 1024 * 1024, "$calls calls grow RSS by less than 2 MB");

# each kind of call on its own, so a leak is attributed
for my $i (0 .. $#ops) {
    my $op = $ops[$i];
    $op->() for 1 .. 2000;
    my $s = rss();
    $op->() for 1 .. 100_000;
    my $g = rss() - $s;
    cmp_ok($g, '<', 512 * 1024, "op $i: 100000 calls grow RSS by less than 512 KB") or diag("grew $g bytes");
}

done_testing();
