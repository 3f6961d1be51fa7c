#!/usr/bin/perl
# The cost of one wait of SharedArea::WebSocket's hot loops on its socket:
# SharedArea::_ws_poll (what WebSocket.pm calls) against IO::Poll's private
# IO::Poll::_poll (what it called before) and IO::Poll's public object API
# (a per-session object whose mask is set once). Each poll is made on a
# socket that is ready (readable, and writable) with timeout 0, as the hot
# loops mostly find it; runs alternate (A, B, C, A, ...) to even out drift,
# and the medians are printed side by side with the ratio to IO::Poll::_poll.
#
#   perl -Mblib bench/poll-call.pl [--polls N] [--reps R] [--fd N]
#
# --fd moves the socket to that descriptor number first (e.g. 2000, above
# select(2)'s 1024; needs `ulimit -n` above it).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../blib/lib", "$FindBin::Bin/../blib/arch";
use Getopt::Long qw(GetOptions);
use IO::Handle;
use IO::Poll qw(POLLIN POLLOUT);
use POSIX ();
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC);
use Time::HiRes qw(time);
use SharedArea;

my %o = (polls => 200_000, reps => 5, fd => 0);
GetOptions(\%o, 'polls=i', 'reps=i', 'fd=i') or die "usage: $0 [--polls N] [--reps R] [--fd N]\n";

socketpair(my $sock, my $peer, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!\n";
if ($o{fd}) {
    defined POSIX::dup2(fileno $sock, $o{fd}) or die "dup2 to $o{fd}: $! (ulimit -n?)\n";
    $sock = IO::Handle->new_from_fd($o{fd}, 'r+') or die "fd $o{fd}: $!\n";
}
syswrite($peer, 'x') == 1 or die "write: $!\n";    # $sock is readable from now on
my $fd = fileno $sock;
my $want = POLLIN | POLLOUT;
my $poll = IO::Poll->new;
$poll->mask($sock => $want);

my %way = (
    'IO::Poll::_poll (before)' => sub {
        for (1 .. $o{polls}) {
            my @p = ($fd, $want);
            IO::Poll::_poll(0, @p) == 1 && ($p[1] & POLLIN) or die "IO::Poll::_poll: not ready ($!)\n";
        }
    },
    'IO::Poll object' => sub {
        for (1 .. $o{polls}) {
            $poll->poll(0) == 1 && ($poll->events($sock) & POLLIN) or die "IO::Poll->poll: not ready ($!)\n";
        }
    },
    'SharedArea::_ws_poll (now)' => sub {
        for (1 .. $o{polls}) {
            SharedArea::_ws_poll($fd, $want, 0) & POLLIN or die "SharedArea::_ws_poll: not ready ($!)\n";
        }
    },
);
my @order = ('IO::Poll::_poll (before)', 'IO::Poll object', 'SharedArea::_ws_poll (now)');
my %ns;
for (1 .. $o{reps}) {
    for my $w (@order) {
        my $t = time;
        $way{$w}->();
        push @{ $ns{$w} }, (time - $t) / $o{polls} * 1e9;
    }
}
sub median { my @s = sort { $a <=> $b } @_; return $s[@s / 2] }
my $base = median(@{ $ns{ $order[0] } });
printf "one poll of fd %d (ready, timeout 0), median of %d runs of %d polls:\n", $fd, $o{reps}, $o{polls};
printf "  %-28s %7.0f ns  %5.2fx\n", $_, median(@{ $ns{$_} }), median(@{ $ns{$_} }) / $base for @order;
