package SharedArea::Notify;

# Event-loop watchers for an area's updates. The core gives, per process and
# area, one descriptor (an eventfd) that a helper thread signals after each
# update (SharedArea::notify_fd); this module puts one watcher per area on it
# in the process's event loop, reads the counter when it fires, and calls
# every callback registered for that area.

use strict;
use warnings;

use Carp ();
use Scalar::Util ();
use SharedArea ();

our $VERSION = '1.0.0';

=head1 NAME

SharedArea::Notify - be called back when an area is updated, from AnyEvent or Mojo::IOLoop

=head1 SYNOPSIS

    use SharedArea;
    use SharedArea::Notify;

    my $id = SharedArea::init('name=frames');
    # AnyEvent (Twiggy, Feersum, or any AnyEvent program)
    my $guard = SharedArea::Notify->anyevent($id, sub {
        my ($id) = @_;
        # read the area, send it to clients ... (never block here)
    });
    # Mojo::IOLoop (a Mojolicious app)
    my $w = SharedArea::Notify->mojo($id, sub { my ($id) = @_; ... });
    undef $guard;    # stops that callback

=head1 DESCRIPTION

C<uwsgi::sharedarea_wait> blocks its process; an event loop serving many
clients cannot afford that. The core gives each process a descriptor per
area that becomes readable after the area is updated
(L<SharedArea/notify_fd>; a helper thread waits on the area's update futex
and signals an C<eventfd>). This module watches that descriptor in the
event loop and calls back.

Updates that happen while the loop is busy make one call, not one each:
the callback reads the area's current state (the latest frame, say), so a
slow loop never works through stale updates. An update after the callback
was called makes another call.

Callbacks of one area are called in the order they were registered; one
that dies is reported with C<warn> and the others still run. Use one event
loop per process for a given area (the two kinds would take each other's
wake-ups). After C<fork>, register again in the child.

=head1 METHODS

=head2 SharedArea::Notify->anyevent($id, $callback)

Calls C<< $callback->($id) >> from the L<AnyEvent> loop after each update
of area C<$id>. Returns a guard: the callback is registered while the
guard lives. Dies when AnyEvent cannot be loaded or C<$id> is not an area.

=head2 SharedArea::Notify->mojo($id, $callback[, $loop])

The same from L<Mojo::IOLoop> (C<$loop>, default the singleton).

=cut

my %DISPATCH;    # "kind:id" -> { fh, watcher, callbacks => { serial => [cb, id] }, pid }
my %FH;          # "pid:fd" -> a handle on the core's descriptor, kept (closing it would close the descriptor)
my $SERIAL = 0;

sub anyevent {
    my ($class, $id, $cb) = @_;
    my $F = 'SharedArea::Notify->anyevent';
    Carp::croak("$F: usage: SharedArea::Notify->anyevent(\$id, \$callback)") unless @_ == 3 && ref $cb eq 'CODE';
    eval { require AnyEvent; 1 } or Carp::croak("$F: AnyEvent is not installed (Debian: libanyevent-perl)");
    return _register('anyevent', $id, $cb, $F, sub {
        my ($fh, $fire) = @_;
        return AnyEvent->io(fh => $fh, poll => 'r', cb => $fire);
    });
}

sub mojo {
    my ($class, $id, $cb, $loop) = @_;
    my $F = 'SharedArea::Notify->mojo';
    Carp::croak("$F: usage: SharedArea::Notify->mojo(\$id, \$callback[, \$loop])")
        unless (@_ == 3 || @_ == 4) && ref $cb eq 'CODE';
    eval { require Mojo::IOLoop; 1 } or Carp::croak("$F: Mojo::IOLoop is not installed (Debian: libmojolicious-perl)");
    $loop ||= Mojo::IOLoop->singleton;
    return _register('mojo', $id, $cb, $F, sub {
        my ($fh, $fire) = @_;
        my $reactor = $loop->reactor;
        $reactor->io($fh => $fire)->watch($fh, 1, 0);
        return SharedArea::Notify::_MojoWatch->new($reactor, $fh);
    });
}

sub _register {
    my ($kind, $id, $cb, $F, $watch) = @_;
    my $fd = eval { SharedArea::notify_fd($id) };
    if (!defined $fd) {
        (my $err = $@) =~ s/ at \S+ line \d+\.?\n\z//;
        Carp::croak("$F: $err");
    }
    my $key = "$kind:$id";
    my $d = $DISPATCH{$key};
    if (!$d || $d->{pid} != $$) {
        my $fh = $FH{"$$:$fd"};
        if (!$fh) {
            open($fh, '<&=', $fd) or Carp::croak("$F: area $id: cannot open descriptor $fd: $!");
            $FH{"$$:$fd"} = $fh;
        }
        $d = $DISPATCH{$key} = { fh => $fh, callbacks => {}, pid => $$ };
        my $fire = sub { _fire($key) };
        $d->{watcher} = $watch->($fh, $fire);
    }
    my $serial = ++$SERIAL;
    $d->{callbacks}{$serial} = [ $cb, $id ];
    return SharedArea::Notify::_Guard->new($key, $serial);
}

# The descriptor is readable: read the counter (re-arms it), then call back.
sub _fire {
    my ($key) = @_;
    my $d = $DISPATCH{$key} or return;
    sysread($d->{fh}, my $count, 8);
    for my $serial (sort { $a <=> $b } keys %{ $d->{callbacks} }) {
        my $entry = $d->{callbacks}{$serial} or next;    # removed by an earlier callback
        eval { $entry->[0]->($entry->[1]); 1 } or warn "SharedArea::Notify: a callback for area $entry->[1] died: $@";
    }
    return;
}

sub _unregister {
    my ($key, $serial) = @_;
    my $d = $DISPATCH{$key} or return;
    delete $d->{callbacks}{$serial};
    return if %{ $d->{callbacks} };
    delete $DISPATCH{$key};    # the watcher goes with it; the descriptor stays (the core owns it)
    return;
}

package SharedArea::Notify::_Guard;

sub new { my ($class, $key, $serial) = @_; return bless [ $key, $serial ], $class }
sub DESTROY { my ($self) = @_; SharedArea::Notify::_unregister(@$self) unless ${^GLOBAL_PHASE} eq 'DESTRUCT'; return }

package SharedArea::Notify::_MojoWatch;

sub new { my ($class, $reactor, $fh) = @_; return bless [ $reactor, $fh ], $class }
sub DESTROY { my ($self) = @_; $self->[0]->remove($self->[1]) if $self->[0]; return }

1;

__END__

=head1 SEE ALSO

L<SharedArea>, L<SharedArea::WebSocket> (C<accept>: WebSocket sessions in an event loop).

=cut
