#!/usr/bin/perl
# The demo under a crowd: N raw WebSocket viewers (some of them slow readers)
# plus page requests against a running demo (scripts/demo), for S seconds.
# Prints, per kind of viewer, the frames per second each received and the age
# of the frames when they arrived (now - the producer's write time in the
# frame's header), the latency of GET / and GET /stats, the producer's frame
# rate (from the frame numbers), and the server's CPU use. A printout, not a
# pass/fail check.
#
#   perl bench/demo-viewers.pl [--url http://127.0.0.1:5000] [--viewers 100]
#        [--slow 5] [--slow-rate BYTES_PER_S] [--seconds 10] [--procs 4] [--start]
#
# --start runs scripts/demo itself (on a free port, its own area name) and
# stops it afterwards. The viewers are spread over --procs client processes,
# which read with large non-blocking reads and skip payloads without copying
# them, so that the clients cost less than the server they measure.
use strict;
use warnings;
use FindBin;
use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use Getopt::Long qw(GetOptions);
use IO::Poll qw(POLLIN);
use IO::Socket::INET;
use MIME::Base64 ();
use POSIX ();
use Time::HiRes qw(time sleep);

my %o = (url => 'http://127.0.0.1:5000', viewers => 100, slow => 5, 'slow-rate' => 1 << 20,
    seconds => 10, procs => 4, warmup => 2);
GetOptions(\%o, 'url=s', 'viewers=i', 'slow=i', 'slow-rate=i', 'seconds=f', 'procs=i', 'warmup=f', 'start')
    or die "usage: $0 [--url URL] [--viewers N] [--slow N] [--slow-rate B/s] [--seconds S] [--procs P] [--start]\n";

my ($host, $port);
my $demo_pid;
if ($o{start}) {
    $port = do { my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1:0') or die; $s->sockport };
    $o{url} = "http://127.0.0.1:$port";
    $host = '127.0.0.1';
    $demo_pid = fork // die "fork: $!";
    if (!$demo_pid) {
        POSIX::setsid();
        open STDOUT, '>', "/tmp/demo-viewers.$$.log";
        open STDERR, '>&', \*STDOUT;
        $ENV{PORT} = $port;
        $ENV{SHAREDAREA_DEMO_NAME} = "demo-bench-$$";
        $ENV{SHAREDAREA_DEMO_NO_INSTALL} = 1;
        exec "$FindBin::Bin/../scripts/demo" or POSIX::_exit(98);
    }
    my $deadline = time + 240;
    until (eval { http_get('/stats') }) {
        die "scripts/demo did not come up within 240 s\n" if time > $deadline;
        sleep 0.3;
    }
}
($host, $port) = $o{url} =~ m{^http://([^/:]+):(\d+)} or die "--url must be http://HOST:PORT\n";
END { if ($demo_pid) { kill 'TERM', -$demo_pid; kill 'TERM', $demo_pid; waitpid $demo_pid, 0 } }


# One GET; returns (seconds, body).
sub http_get {
    my ($path) = @_;
    my $t0 = time;
    my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Timeout => 5) or die "connect: $!\n";
    print $s "GET $path HTTP/1.0\r\nHost: $host\r\n\r\n";
    local $/;
    my $res = <$s>;
    die "GET $path: no answer\n" unless defined $res && $res =~ m{^HTTP/1\.\d 200 };
    return (time - $t0, (split /\r\n\r\n/, $res, 2)[1]);
}

sub ws_connect {
    my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Timeout => 10) or die "connect: $!\n";
    my $key = MIME::Base64::encode_base64(join('', map { chr rand 256 } 1 .. 16), '');
    print $s "GET /ws HTTP/1.1\r\nHost: $host:$port\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n\r\n";
    my $head = '';
    while ($head !~ /\r\n\r\n/) {
        sysread($s, $head, 4096, length $head) or die "no 101\n";
    }
    die "no 101: $head\n" unless $head =~ m{^HTTP/1\.1 101 };
    my (undef, $rest) = split /\r\n\r\n/, $head, 2;
    $s->blocking(0);
    return { sock => $s, buf => $rest, skip => 0, frames => 0, ages => [], first => undef, last => undef };
}

# Takes whole frame headers from $v->{buf}; counts binary frames, reads their
# frame number and write time, skips payloads without keeping them.
sub consume {
    my ($v, $now, $measuring) = @_;
    while (1) {
        if ($v->{skip}) {
            my $n = $v->{skip} < length $v->{buf} ? $v->{skip} : length $v->{buf};
            substr($v->{buf}, 0, $n, '');
            $v->{skip} -= $n;
            return if $v->{skip};
        }
        my $have = length $v->{buf};
        return if $have < 2;
        my ($b0, $b1) = unpack 'CC', $v->{buf};
        my ($op, $len, $h) = ($b0 & 0x0f, $b1 & 0x7f, 2);
        if ($len == 126) { return if $have < 4; $len = unpack 'n', substr($v->{buf}, 2, 2); $h = 4 }
        elsif ($len == 127) { return if $have < 10; my ($hi, $lo) = unpack 'NN', substr($v->{buf}, 2, 8); $len = $hi * 2**32 + $lo; $h = 10 }
        if ($op == 2) {
            return if $have < $h + 24;
            my ($frame, $written_us) = unpack 'Q< Q<', substr($v->{buf}, $h + 8, 16);
            if ($measuring) {
                $v->{frames}++;
                push @{ $v->{ages} }, $now - $written_us / 1e6;
                $v->{first} //= $frame;
                $v->{last} = $frame;
            }
        } elsif ($op == 9) {    # ping: answer (masked, as a client must)
            return if $have < $h + $len;
            my $payload = substr($v->{buf}, $h, $len);
            syswrite($v->{sock}, pack('CC', 0x8A, 0x80 | $len) . "\0\0\0\0" . $payload);
        }
        substr($v->{buf}, 0, $h, '');
        $v->{skip} = $len;
    }
}

# One client process: its viewers, read until the end; prints one line per viewer.
sub run_clients {
    my ($n_fast, $n_slow, $start, $stop, $out) = @_;
    my @v = map { ws_connect() } 1 .. $n_fast + $n_slow;
    $v[$_]{slow} = 1 for $n_fast .. $#v;
    my $poll = IO::Poll->new;
    $poll->mask($_->{sock} => POLLIN) for @v;
    my %by_fd = map { (fileno($_->{sock}) => $_) } @v;
    my $slow_chunk = int($o{'slow-rate'} / 20);
    my $next_slow = 0;
    while ((my $now = time) < $stop) {
        my $measuring = $now >= $start;
        if ($n_slow && $now >= $next_slow) {    # slow viewers: a small read 20 times a second
            for my $v (grep { $_->{slow} } @v) {
                my $n = sysread($v->{sock}, $v->{buf}, $slow_chunk, length $v->{buf});
                consume($v, time, $measuring) if $n;
            }
            $next_slow = $now + 0.05;
        }
        $poll->poll(0.05);
        for my $s ($poll->handles(POLLIN)) {
            my $v = $by_fd{ fileno $s };
            next if $v->{slow};
            if ($v->{skip} > length $v->{buf}) {
                # inside a payload: read it into a scratch buffer, never append it
                $v->{skip} -= length $v->{buf};
                $v->{buf} = '';
                my $n = sysread($s, my $scratch, $v->{skip} < 4 << 20 ? $v->{skip} : 4 << 20);
                $v->{skip} -= $n if $n;
                next;
            }
            my $n = sysread($s, $v->{buf}, 1 << 16, length $v->{buf});
            consume($v, time, $measuring) if $n;
        }
    }
    for my $v (@v) {
        my @a = sort { $a <=> $b } @{ $v->{ages} };
        printf $out "%s %d %s %s %s %s\n", $v->{slow} ? 'slow' : 'fast', $v->{frames},
            @a ? $a[ int(@a / 2) ] : -1, @a ? $a[ int(@a * 0.99) ] : -1, $v->{first} // -1, $v->{last} // -1;
    }
    close $_->{sock} for @v;
    return;
}

my $t_start = time + $o{warmup} + 1;    # connections first, then a warm-up
my $t_stop = $t_start + $o{seconds};
my (@kids, @pipes);
my $slow_left = $o{slow};
my $fast_left = $o{viewers} - $o{slow};
for my $p (1 .. $o{procs}) {
    my $left = $o{procs} - $p + 1;
    my $nf = int($fast_left / $left); $fast_left -= $nf;
    my $ns = int($slow_left / $left); $slow_left -= $ns;
    pipe(my $r, my $w) or die;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $r;
        run_clients($nf, $ns, $t_start, $t_stop, $w);
        close $w;
        POSIX::_exit(0);
    }
    close $w;
    push @kids, $pid;
    push @pipes, $r;
}

# pages, and the server's CPU, while the viewers stream
my (undef, $stats0) = http_get('/stats');
my ($server_pid) = $stats0 =~ /"pid":(\d+)/;
sleep $t_start - time if $t_start > time;
my $cpu0 = cpu_ticks($server_pid);
my (@page, @stats);
while (time < $t_stop) {
    push @page, (http_get('/'))[0];
    push @stats, (http_get('/stats'))[0];
    sleep 0.2;
}
my $cpu1 = cpu_ticks($server_pid);
my (undef, $stats1) = http_get('/stats');

my @rows;
for my $r (@pipes) { push @rows, map { [ split ' ' ] } <$r> }
waitpid $_, 0 for @kids;

sub cpu_ticks {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return undef;
    my @f = split ' ', (split /\) /, scalar <$fh>)[1];
    return $f[11] + $f[12];    # utime + stime
}
sub median { my @s = sort { $a <=> $b } @_; return @s ? $s[ int(@s / 2) ] : 0 }
sub maxof { my @s = sort { $a <=> $b } @_; return @s ? $s[-1] : 0 }
sub minof { my @s = sort { $a <=> $b } @_; return @s ? $s[0] : 0 }

my $secs = $o{seconds};
printf "demo at %s: %d viewers (%d slow, reading %.1f MB/s each), %d client processes, %.0f s measured\n",
    $o{url}, $o{viewers}, $o{slow}, $o{'slow-rate'} / 1e6, $o{procs}, $secs;
for my $kind (qw(fast slow)) {
    my @k = grep { $_->[0] eq $kind } @rows or next;
    my @fps = map { $_->[1] / $secs } @k;
    printf "  %-4s viewers: %3d   fps per viewer min %5.1f  median %5.1f  max %5.1f   frame age median %6.1f ms  p99 %6.1f ms (worst viewer)\n",
        $kind, scalar @k, minof(@fps), median(@fps), maxof(@fps),
        1000 * median(map { $_->[2] } @k), 1000 * maxof(map { $_->[3] } @k);
}
my @span = map { $_->[5] - $_->[4] } grep { $_->[0] eq 'fast' && $_->[4] >= 0 } @rows;
printf "  producer: %.1f fps (frame numbers seen by the fast viewers)\n", maxof(@span) / $secs;
printf "  GET /      : %3d requests, median %6.1f ms, max %6.1f ms\n", scalar @page, 1000 * median(@page), 1000 * maxof(@page);
printf "  GET /stats : %3d requests, median %6.1f ms, max %6.1f ms\n", scalar @stats, 1000 * median(@stats), 1000 * maxof(@stats);
if (defined $cpu0 && defined $cpu1) {
    printf "  server (pid %d): %.0f%% of one core\n", $server_pid, 100 * ($cpu1 - $cpu0) / POSIX::sysconf(POSIX::_SC_CLK_TCK()) / $secs;
}
my ($skipped) = $stats1 =~ /"frames_skipped":(\d+)/;
printf "  frames skipped for lagging viewers (server's count, whole run): %s\n", $skipped // '-';
