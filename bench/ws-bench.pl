#!/usr/bin/perl
# Throughput of uwsgi::websocket_send_binary_from_sharedarea (frame header +
# area bytes written from shared memory by the core) against syswrite of the
# very same bytes (header + payload) from a Perl string, on the same socket,
# to a reader process that discards everything. Runs alternate (A, B, A, B,
# ...) to even out drift; medians are printed side by side with the ratio.
#
#   perl -Mblib bench/ws-bench.pl [--size BYTES] [--seconds S] [--reps N]
#                                 [--socket unix|tcp|both] [--pin none|same|spread]
#                                 [--min-ratio R]
#
# --pin places the writer and the reader on one CPU (same) or on CPUs 0 and 1
# (spread) with taskset; on a unix socket the placement changes syswrite's
# speed a lot (the reader running between the kernel's chunks or beside
# them), so compare like with like. --min-ratio makes the exit status 1 when
# a ratio is below R (for CI).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../blib/lib", "$FindBin::Bin/../blib/arch";
use Errno qw(EINTR);
use Getopt::Long qw(GetOptions);
use IO::Handle;
use IO::Socket::INET;
use POSIX qw(_exit);
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC);
use Time::HiRes qw(time);
use SharedArea;

my %o = (size => 1 << 20, seconds => 1, reps => 5, socket => 'both', pin => 'none', 'min-ratio' => 0);
GetOptions(\%o, 'size=i', 'seconds=f', 'reps=i', 'socket=s', 'pin=s', 'min-ratio=f')
    or die "usage: $0 [--size BYTES] [--seconds S] [--reps N] [--socket unix|tcp|both]"
        . " [--pin none|same|spread] [--min-ratio R]\n";
die "--pin must be none, same or spread\n" unless $o{pin} =~ /^(?:none|same|spread)$/;
die "--size must be at least 1\n" if $o{size} < 1;
die "--socket must be unix, tcp or both\n" unless $o{socket} =~ /^(?:unix|tcp|both)$/;

my $id = SharedArea::init("size=$o{size}");
my $payload = join '', map { sprintf '<%06x>', $_ } 0 .. int($o{size} / 8);
$payload = substr($payload, 0, $o{size});
uwsgi::sharedarea_write($id, 0, $payload);
my $frame = frame_header(2, $o{size}) . $payload;    # what syswrite sends: the same bytes

sub frame_header {
    my ($op, $len) = @_;
    return pack('CC', 0x80 | $op, $len) if $len < 126;
    return pack('CCn', 0x80 | $op, 126, $len) if $len < 65536;
    return pack('CCNN', 0x80 | $op, 127, int($len / 2**32), $len % 2**32);
}

sub connected_pair {
    my ($kind) = @_;
    if ($kind eq 'unix') {
        socketpair(my $w, my $r, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!\n";
        return ($w, $r);
    }
    my $l = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', ReuseAddr => 1)
        or die "listen: $!\n";
    my $w = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $l->sockport, Proto => 'tcp')
        or die "connect: $!\n";
    my $r = $l->accept or die "accept: $!\n";
    return ($w, $r);
}

# A reader process that discards everything until end of stream.
sub start_reader {
    my ($r, $w) = @_;
    my $pid = fork // die "fork: $!\n";
    if (!$pid) {
        close $w;
        alarm 600;
        my $buf = '';
        while (1) {
            my $n = sysread($r, $buf, 4 << 20);
            next if !defined $n && $! == EINTR;
            last unless $n;
        }
        _exit(0);
    }
    close $r;
    pin($$, 0) if $o{pin} ne 'none';
    pin($pid, $o{pin} eq 'same' ? 0 : 1) if $o{pin} ne 'none';
    return $pid;
}

sub pin {
    my ($pid, $cpu) = @_;
    system("taskset -pc $cpu $pid >/dev/null") == 0 or die "taskset -pc $cpu $pid failed (is util-linux installed?)\n";
    return;
}

sub syswrite_all {
    my ($fh) = @_;
    my ($off, $len) = (0, length $frame);
    while ($off < $len) {
        my $n = syswrite($fh, $frame, $len - $off, $off);
        if (!defined $n) { next if $! == EINTR; die "syswrite: $!\n" }
        $off += $n;
    }
    return;
}

# Bytes per second (payload + header) of $send over $o{seconds}.
sub measure {
    my ($send) = @_;
    my ($n, $t0) = (0, time);
    my $t;
    do { $send->() for 1 .. 4; $n += 4 } while (($t = time) - $t0 < $o{seconds});
    return $n * length($frame) / ($t - $t0);
}

sub median { my @s = sort { $a <=> $b } @_; return $s[ $#s / 2 ] }

my @kinds = $o{socket} eq 'both' ? qw(unix tcp) : ($o{socket});
my $mib = 1024 * 1024;
printf "ws-bench: %d-byte binary frames to a local reader that discards them; median of %d runs of %.1f s each;"
    . " CPU placement: %s\n", $o{size}, $o{reps}, $o{seconds}, $o{pin};
printf "%-6s %30s %30s %18s %8s\n", 'socket', 'send_binary_from_sharedarea', 'syswrite of a Perl string', '_ws_send_from_area', 'ratio';
my $fail = 0;
for my $kind (@kinds) {
    my ($w, $r) = connected_pair($kind);
    my $pid = start_reader($r, $w);
    my $env = {
        REQUEST_METHOD => 'GET', SERVER_PROTOCOL => 'HTTP/1.1', HTTP_UPGRADE => 'websocket',
        HTTP_CONNECTION => 'Upgrade', HTTP_SEC_WEBSOCKET_VERSION => 13,
        HTTP_SEC_WEBSOCKET_KEY => 'dGhlIHNhbXBsZSBub25jZQ==', 'psgix.io' => $w,
    };
    local $SharedArea::WebSocket::ENV = $env;
    uwsgi::websocket_handshake();
    my $fd = fileno $w;
    my %runs = (area => [], perl => [], xs => []);
    my %send = (
        area => sub { uwsgi::websocket_send_binary_from_sharedarea($id, 0) },
        perl => sub { syswrite_all($w) },
        xs   => sub { SharedArea::_ws_send_from_area('bench', $fd, 2, $id, 0) },
    );
    $send{$_}->() for qw(area perl xs);    # warm up: socket buffers, page faults
    for (1 .. $o{reps}) {
        push @{ $runs{$_} }, measure($send{$_}) for qw(area perl xs);
    }
    my %m = map { $_ => median(@{ $runs{$_} }) } keys %runs;
    my $ratio = $m{area} / $m{perl};
    printf "%-6s %24.0f MiB/s %24.0f MiB/s %12.0f MiB/s %7.2fx\n", $kind, $m{area} / $mib, $m{perl} / $mib, $m{xs} / $mib, $ratio;
    $fail = 1 if $o{'min-ratio'} && $ratio < $o{'min-ratio'};
    shutdown $w, 2;
    close $w;
    waitpid $pid, 0;
}
print "ratio = send_binary_from_sharedarea / syswrite (target >= 0.9x); _ws_send_from_area: the XS call without the Perl layer\n";
exit $fail;
