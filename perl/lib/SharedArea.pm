package SharedArea;

use strict;
use warnings;

our $VERSION = '1.0.0';

require XSLoader;
XSLoader::load('SharedArea', $VERSION);

# The status of the last failure (a SHAREDAREA_E_* number, see
# SharedArea::Error); set by every failing call, left alone by successful ones.
our $STATUS = 0;

# The uWSGI names SharedArea provides in package uwsgi: the Perl ones of
# uwsgi-functions.tsv, the one table of them (t/00-load.t checks this list, the
# POD and the XS against it).
our @UWSGI_FUNCTIONS = qw(
    sharedarea_read sharedarea_readfast sharedarea_write
    sharedarea_read8 sharedarea_read16 sharedarea_read32 sharedarea_read64
    sharedarea_write8 sharedarea_write16 sharedarea_write32 sharedarea_write64
    sharedarea_inc8 sharedarea_inc16 sharedarea_inc32 sharedarea_inc64
    sharedarea_dec8 sharedarea_dec16 sharedarea_dec32 sharedarea_dec64
    sharedarea_wait sharedarea_update
    sharedarea_rlock sharedarea_wlock sharedarea_unlock
    sharedarea_readbyte sharedarea_writebyte
    sharedarea_readlong sharedarea_writelong sharedarea_inclong
);

# Inside a real uWSGI host, uwsgi:: already has uWSGI's own sharedarea
# functions, working on uWSGI's areas (--sharedarea). There SharedArea adds no
# uwsgi:: name (one that worked on SharedArea's areas while its neighbours
# worked on uWSGI's would be a trap) and creates no area from
# UWSGI_SHAREDAREA (uWSGI already did). SharedArea::* still work on areas
# created with SharedArea::init.
our $IN_UWSGI_HOST = defined &uwsgi::sharedarea_read ? 1 : 0;

# Install NAMES (functions of package SharedArea) into package uwsgi, each
# unless uwsgi:: already has it: inside a real uWSGI host nothing is replaced.
sub _install_uwsgi {
    my (@names) = @_;
    no strict 'refs';
    for my $name (@names) {
        next if defined &{"uwsgi::$name"};
        *{"uwsgi::$name"} = \&{"SharedArea::$name"};
    }
    return;
}

_install_uwsgi(@UWSGI_FUNCTIONS) unless $IN_UWSGI_HOST;

# The areas uWSGI would create for --sharedarea, from its environment
# variable: only when this process has no area yet.
sub _init_from_env {
    my $env = $ENV{UWSGI_SHAREDAREA};
    return if $IN_UWSGI_HOST || !defined $env || $env !~ /\S/ || count() > 0;
    for my $spec (split /;/, $env) {
        $spec =~ s/\A\s+|\s+\z//g;
        next if $spec eq '';
        eval { init($spec); 1 }
            or die "SharedArea: UWSGI_SHAREDAREA='$env': $@";
    }
    return;
}

_init_from_env();

# use SharedArea @specs;  creates one area per spec, in order.
sub import {
    my ($class, @specs) = @_;
    init($_) for @specs;
    return;
}

# Lock guards: the lock is held while the guard lives and released when it
# goes out of scope (also when a die unwinds the scope).
sub rlock_guard { return _lock_guard('rlock_guard', 0, @_) }
sub wlock_guard { return _lock_guard('wlock_guard', 1, @_) }

sub _lock_guard {
    my ($name, $write, @args) = @_;
    if (@args < 1 || @args > 2) {
        require Carp;
        Carp::croak("Usage: SharedArea::$name(id[, timeout])");
    }
    # The lock's errors and warnings (a lock recovered from a dead holder)
    # name this function and the caller's line; anything else (a %SIG
    # handler's die) goes on as it is.
    my $ours = sub {
        my ($msg) = @_;
        return undef unless $msg =~ s/^sharedarea_[rw]lock: //;
        $msg =~ s/ at \S+ line \d+\.?\n\z//;
        return "SharedArea::$name: $msg";
    };
    my $ok = eval {
        local $SIG{__WARN__} = sub {
            my $w = $ours->($_[0]);
            if (defined $w) { require Carp; Carp::carp($w) } else { warn $_[0] }
        };
        $write ? sharedarea_wlock(@args) : sharedarea_rlock(@args);
        1;
    };
    if (!$ok) {
        my $err = $@;
        die $err unless ref $err && ref($err)->isa('SharedArea::Error')
                        && $err->function =~ /\Asharedarea_[rw]lock\z/;
        my $function = "SharedArea::$name";
        require Carp;
        die $err->_as($function, Carp::shortmess("$function: " . $err->_cause));
    }
    return bless { id => $args[0], pid => $$ }, 'SharedArea::LockGuard';
}

package SharedArea::LockGuard;

# A new ithread does not hold its creator's locks: its copy of a guard is undef.
sub CLONE_SKIP { return 1 }

# Releases the lock now (once); later calls and the destructor do nothing.
sub release {
    my ($self) = @_;
    return 0 if $self->{released}++ || $self->{pid} != $$;
    SharedArea::sharedarea_unlock($self->{id});
    return 1;
}

sub DESTROY {
    my ($self) = @_;
    # A forked child inherited the guard, not the lock: only the process
    # that took it releases it.
    return if $self->{released} || $self->{pid} != $$;
    local ($@, $!, $?);
    eval { $self->release; 1 } or warn "SharedArea: releasing the lock of area $self->{id}: $@";
    return;
}

package SharedArea::Error;

# What every SharedArea function dies with (built by the XS, see S_throw in
# perl/SharedArea.xs): an object that reads as the message text, so "die"
# output, "$@" and "$@ =~" are what they were, and that tells the status.

use overload '""' => sub { $_[0]{text} }, fallback => 1;

my (%NAME_OF, %CODE_OF);
sub _table {
    if (!%CODE_OF) {
        %CODE_OF = SharedArea::_statuses();
        %NAME_OF = reverse %CODE_OF;
    }
    return;
}

sub status   { return $_[0]{status} }
sub function { return $_[0]{function} }
sub area     { return $_[0]{area} }
sub message  { return $_[0]{message} }
sub name     { _table(); return $NAME_OF{ $_[0]{status} } }

# The number of status NAME ("E_OUT_OF_RANGE"); dies for an unknown name.
sub code {
    my (undef, $name) = @_;
    _table();
    defined $CODE_OF{$name} or do { require Carp; Carp::croak("SharedArea::Error->code: no status $name") };
    return $CODE_OF{$name};
}

# The cause with its area, without the function: "area 0: timed out ...".
sub _cause { return $_[0]{cause} }

# The same failure reported as FUNCTION with TEXT (for a Perl wrapper, e.g.
# SharedArea::wlock_guard around sharedarea_wlock).
sub _as {
    my ($self, $function, $text) = @_;
    return bless { %$self, function => $function, text => $text }, ref $self;
}

package SharedArea;

# The websocket functions (uwsgi::websocket_*): part of this distribution.
require SharedArea::WebSocket;

1;

__END__

=head1 NAME

SharedArea - uWSGI's sharedarea (shared memory pages with counters, locks and wait-for-update) for any PSGI server

=head1 SYNOPSIS

  use SharedArea;                  # areas from UWSGI_SHAREDAREA, if set
  use SharedArea '4';              # or: one anonymous area of 4 pages (id 0)
  use SharedArea 'name=myapp,size=64K';    # a named area any process can attach to

  uwsgi::sharedarea_write(0, 0, "hello world");     # 1
  my $s = uwsgi::sharedarea_read(0, 0, 11);         # "hello world"
  my $n = uwsgi::sharedarea_inc64(0, 100);          # the new value
  uwsgi::sharedarea_wait(0, 0, 5);                  # until the next update, at most 5 s

  my $buf = '';
  my $got = uwsgi::sharedarea_readfast(0, 0, $buf, 4096);   # into $buf's own buffer

  {
      my $guard = SharedArea::wlock_guard(0);     # released at the end of the block, or by a die
      my $v = uwsgi::sharedarea_read64(0, 8);
      uwsgi::sharedarea_write64(0, 8, $v * 2);
  }

  my $id   = SharedArea::init('size=1M');          # another area: its id
  my $info = SharedArea::info($id);                # { size => 1048576, ... }

=head2 A PSGI application under Starman

  # app.psgi
  use strict;
  use warnings;
  use SharedArea '1';      # created while the app is loaded, before the fork

  my $app = sub {
      my $env  = shift;
      my $hits = uwsgi::sharedarea_inc64(0, 0);     # one counter for all workers
      return [200, ['Content-Type' => 'text/plain'], ["hit $hits\n"]];
  };

Run it with the app preloaded, so every worker inherits the same anonymous
area:

  starman --preload-app --workers 4 --listen 127.0.0.1:5000 app.psgi

or give the area as uWSGI would take it:

  UWSGI_SHAREDAREA=1 starman --preload-app app.psgi

Without C<--preload-app> each Starman worker loads the app itself and would
create an anonymous area of its own.  Either create the areas in the master
from the command line, before the fork:

  starman -MSharedArea=1 --workers 4 app.psgi          # use SharedArea '1' in the master
  UWSGI_SHAREDAREA=1 starman -MSharedArea app.psgi     # the same, spec from the environment

(the app then says only C<use SharedArea;>), or use a named area
(C<use SharedArea 'name=myapp,pages=1'>), which every process attaches to.

=head1 DESCRIPTION

SharedArea gives processes on one host pages of shared memory that they read,
write, count in and wait on.  It is the I<sharedarea> subsystem of the uWSGI
application server (the API of uWSGI 1.9.21 and later) as a standalone
library, so that an application written for uWSGI's Perl plugin runs
unchanged under Starman, Twiggy, plackup or any other PSGI server - and the
places where uWSGI is broken (see L</"Migrating from uWSGI">) work.

C<use SharedArea;> loads the module (a Rust core behind a C ABI, linked into
this XS module) and installs the functions below into package C<uwsgi>, under
uWSGI's names.  A function that package C<uwsgi> already has is not replaced,
and inside a real uWSGI host none is added (see L</"Inside uWSGI itself">).

When the module is present, C<SharedArea::WebSocket> is loaded too and
provides the C<uwsgi::websocket_*> functions (see L<SharedArea::WebSocket>
and L<Plack::Middleware::SharedArea>).

=head2 Areas

An area is a contiguous range of bytes shared by every process that has it.
A process numbers its areas 0, 1, 2, ... in the order it creates them; a
child created by C<fork> inherits its parent's areas under the same ids.

Areas are created from a I<spec>, the string uWSGI takes in C<--sharedarea>:

=over 4

=item C<N>

N pages of anonymous shared memory.

=item C<pages=N>, C<size=BYTES>

the size in pages or bytes (decimal, C<0x> hex, or with a C<K>, C<M> or C<G>
suffix).  Anonymous areas are rounded up to whole pages.

=item C<file=PATH>, C<fd=N>, C<offset=N>

map an existing file or open descriptor (C<MAP_SHARED>) from C<offset> on;
without a size, to the end of the file.

=item C<name=NAME>

a named area (a POSIX shared-memory object): created if absent, attached if
present, shared with any process that names it, forked or not.  It outlives
the processes that use it: see L</Named areas over their life>.

=back

Keys are separated by commas: C<size=64K,name=myapp>.  A bad spec creates
nothing and dies with a message naming the spec and the problem.

Areas come from:

=over 4

=item C<use SharedArea @specs;>

one area per spec, in order.

=item C<SharedArea::init($spec)>

one area; returns its id.

=item the environment variable C<UWSGI_SHAREDAREA>

the variable real uWSGI reads for C<--sharedarea>; C<;> separates several
specs.  It is read once, when the module is loaded and only if the process has
no area yet (so a child that inherited areas does not create more).  Its areas
come first: with C<UWSGI_SHAREDAREA=4> and C<use SharedArea '8'> the 4-page
area is 0 and the 8-page area is 1.  A bad spec in it makes loading the module
die.

=back

Areas live until the process exits.

=head2 Named areas over their life

A C<name=NAME> area is the file F</dev/shm/NAME> (a POSIX shared-memory
object, mode 0600, owned by its creator).  It B<persists until it is removed
or the host reboots>: the data, the counters and the update count survive
every process that used it, and the next C<name=NAME> attaches to the same
bytes.  Remove one with L</SharedArea::remove($name)>, the C<sharedarea rm>
command, or C<sharedarea_unlink()> in C; list them with C<sharedarea ls>.

Removing a name does not pull the memory from under anyone: processes that
have the area keep using it (its lock and counters too) until they exit, and
the memory is freed when the last one has gone.  A later C<name=NAME> with a
size creates a new, empty area that those processes do not see.

Creating a named area reserves its memory (C<posix_fallocate>), so a full
F</dev/shm> is an error from C<init> (C<No space left on device>), never a
crash on a later write.

Two things the library cannot guard against:

=over 4

=item * Truncation.  A process that shrinks the object (C<truncate -s 0
/dev/shm/NAME>) or a file behind a C<file=> area makes every process using
the lost pages die with C<SIGBUS> on their next access.  Remove areas with
C<remove>, never by truncating them.

=item * C<file=> between unrelated processes.  The lock and counters of a
C<file=> or C<fd=> area live in memory shared only with forked children, not in
the file: two processes that each map the same file with their own C<init>
have separate locks, so their C<inc> and locked updates can be lost, and one's
C<wait> does not see the other's writes.  Unrelated processes share an area
with C<name=>.

=back

Only regular files and shared-memory objects can back an area: a device
(C<file=/dev/zero>), FIFO, socket or directory is refused.

=head2 Errors

Every failure dies (C<croak>) with a message that names the function, the
area and the cause, and changes nothing in the area:

  sharedarea_read: area 0: 16 bytes at 4090 run past the end (4096 bytes)
  sharedarea_write8: area 0: position -1 is negative
  sharedarea_read: area 7: no such area (the only area is 0)
  sharedarea_read: area -1: no such area (the only area is 0)
  sharedarea_wait: area 0: timed out after 0.5 s

What it dies with is a C<SharedArea::Error> object that reads as that text
(followed, as with C<croak>, by C< at FILE line N.>), so printing it, C<"$@">
and C<$@ =~ /.../> work as with a string.  Decide on its status, not on the
wording, which may be improved in any release:

  my $v = eval { uwsgi::sharedarea_read64($id, $pos) };
  if (!defined $v && ref $@ && $@->name eq 'E_OUT_OF_RANGE') { ... }

=over 4

=item C<< $@->status >>

The status: a negative number, one of the C API's C<SHAREDAREA_E_*>
(C<< SharedArea::Error->code('E_TIMED_OUT') >> gives the number of a name).
C<$SharedArea::STATUS> holds it too, set by every failing call.

=item C<< $@->name >>

The status's name without C<SHAREDAREA_>: C<E_NO_SUCH_AREA>, C<E_OUT_OF_RANGE>,
C<E_INVALID_SPEC>, C<E_IO>, C<E_TIMED_OUT>, C<E_LOCK_MISUSE>, C<E_INTERRUPTED>,
C<E_INVALID_ARGUMENT>, C<E_LIMIT>, C<E_PEER_CLOSED>, C<E_NOT_AN_AREA>,
C<E_CONNECTION_FAILED>, ...  Arguments this module refuses itself (not a
number, negative, a read-only buffer) are C<E_INVALID_ARGUMENT> (C<E_OUT_OF_RANGE>
for numbers of 2**64 or more, C<E_NO_SUCH_AREA> for an id no area can have).

=item C<< $@->function >>, C<< $@->area >>, C<< $@->message >>

The function named in the text, the area id (C<undef> when the failure is not
about one area) and the cause alone (C<16 bytes at 4090 run past the end
(4096 bytes)>).  An id no area can have (negative, fractional, 2**31 or more)
fails as an area that does not exist, C<E_NO_SUCH_AREA>, in the same words
about the id as given (C<area -1: no such area (the only area is 0)>), with
C<< $@->area >> C<undef> and the id kept in C<< $@->message >>.

=back

A wrong number of arguments dies with the usage, a plain string, e.g.
C<Usage: uwsgi::sharedarea_read(id, pos[, len])>.

Numbers are taken as Perl's own builtins take them (C<substr>'s position,
say): C<" 10">, C<"10\n">, C<"+10">, C<"1e1">, C<"0 but true"> and a dualvar's
number are numbers; an object is taken through its C<0+> overload (or its
C<""> one when it has no C<0+>, as Perl does), so C<Math::BigInt> and
C<use bigint> values are exact; and the numeric value is cached in the
argument, as Perl (and uWSGI's C<SvIV>) caches it - after
C<uwsgi::sharedarea_read(0, $p, 1)> with C<$p = "6">, a JSON encoder writes
C<$p> as the number C<6>, under uWSGI and here alike.

But arguments are checked strictly.  An area id, position or length must be a
non-negative integer below 2**64: C<undef>, a negative number, a fraction,
C<NaN>, C<Inf>, a string that is not a number (C<"abc">, C<"">, C<"12abc">),
a reference without a numeric overload, and anything of 2**64 or more die
instead of being converted into something else (uWSGI would silently take 0,
the integer part or the address).  A position or length past the end of the
area dies, also when C<pos + len> would wrap around 64 bits.

=head1 FUNCTIONS IN PACKAGE uwsgi

Positions and lengths are in bytes.  Integers are signed, in native byte
order, and need no alignment.

=head2 uwsgi::sharedarea_read($id, $pos[, $len])

Returns the C<$len> bytes at C<$pos> as a byte string.  C<$len> omitted or 0
reads to the end of the area, or to C<used> when the area honours it (see
L</"SharedArea::set_used($id, $used)">).  The range is checked before any
memory is allocated: a huge C<$len> dies, it does not exhaust memory.

=head2 uwsgi::sharedarea_readfast($id, $pos, $buf[, $len])

Copies the same bytes as C<sharedarea_read> into C<$buf>'s own buffer and
returns the number of bytes copied.  C<$buf> ends up a byte string of exactly
those bytes.  Its buffer grows when it is too small and is reused, not
reallocated, when it is already large enough - which is the point of this
function: in a loop, one buffer serves every read.

C<$buf> must be a writable variable: a read-only value (a constant, a literal)
dies.  A string that shares its buffer with another one (copy-on-write) is
given its own buffer first, so no other variable changes.  An undefined
C<$buf> is fine.

=head2 uwsgi::sharedarea_write($id, $pos, $data)

Copies C<$data> into the area at C<$pos>; returns 1.  Counts one update,
also for an empty string.  What is written is the string's internal bytes,
exactly as uWSGI writes them: a character string (UTF8 flag on) is written as
its UTF-8 encoding, wide characters included; a byte string as its bytes; a
number or an object as its string form (see L</"Character strings">).  The
caller's variable is not changed.  C<undef> dies.

=head2 uwsgi::sharedarea_read8($id, $pos), read16, read32, read64

Return the signed 8-, 16-, 32- or 64-bit integer at C<$pos>.

=head2 uwsgi::sharedarea_write8($id, $pos, $value), write16, write32, write64

Store C<$value> as an 8-, 16-, 32- or 64-bit integer; return 1.  A value
wider than the width keeps its low bits, two's complement, as C<pack> does
(C<write8(0, 0, 255)> reads back as -1, C<write32(0, 0, 2**32 + 5)> as 5).
C<$value> must be an integer in -2**63 .. 2**64-1; a fraction, a string that is
not a number, or a value outside that range dies.

=head2 uwsgi::sharedarea_inc8($id, $pos[, $amount]), inc16, inc32, inc64

Add C<$amount> (default 1) to the integer at C<$pos>, wrapping around, and
return the new value.  Atomic with respect to every other operation on the
area, in every process: increments of one integer are never lost, however many
processes make them.

An aligned integer (C<$pos> a multiple of its width) is counted in one CPU
instruction without taking the area's lock word, so processes bumping
different integers of one area run side by side instead of taking turns.
C<rlock> and C<wlock> sections still see no integer change while they hold the
lock.  A plain C<sharedarea_read> of several bytes that spans integers other
processes are changing at that moment sees each integer before or after its
change, not necessarily all of them at one instant; take C<rlock> around the
reads when you need a snapshot of several counters:

    my $g = SharedArea::rlock_guard(0);
    my ($hits, $bytes) = unpack 'q q', uwsgi::sharedarea_read(0, 0, 16);

=head2 uwsgi::sharedarea_dec8($id, $pos[, $amount]), dec16, dec32, dec64

The same, subtracting.

=head2 uwsgi::sharedarea_wait($id[, $freq[, $timeout]])

Blocks until the area is updated after the call began; returns 1.  Every
write, writeN, incN, decN and update counts as an update; reads do not.

C<$timeout> is in seconds, fractions honoured (0.5 waits half a second); 0 or
absent waits forever.  When it expires the call dies with
C<< sharedarea_wait: area N: timed out after T s >>.  C<$freq> (milliseconds)
is accepted for compatibility with uWSGI and otherwise ignored: a waiter is
woken by the update itself, not by polling.  Negative values die.

A signal delivered during the wait runs its C<%SIG> handler promptly; if the
handler dies, the wait ends with that exception, otherwise the wait goes on
for the time that is left.

=head2 uwsgi::sharedarea_update($id)

Counts an update and wakes the waiters without changing any byte; returns 1.

=head2 uwsgi::sharedarea_rlock($id[, $timeout]), uwsgi::sharedarea_wlock($id[, $timeout]), uwsgi::sharedarea_unlock($id)

Take the area's read or write lock, or release it; return 1.  The lock is
shared by every process with the area; every operation takes it by itself,
so these are only needed to make several operations one.  While holding the
write lock a process can call every function on the area; under the read
lock reads work and writes die (they do not hang).  C<wlock> while holding the
read lock dies, and so does C<unlock> without a lock.  Locks nest: each
C<rlock>/C<wlock> needs its C<unlock>.  In Perl code, prefer the guards (C<SharedArea::wlock_guard>,
below): they cannot forget the C<unlock>.

C<$timeout> (seconds, fractions honoured; ours, not uWSGI's) bounds the wait:
absent or C<undef> waits as long as it takes, 0 tries once.  When it expires
the call dies with a message that names the process holding the lock and
for how long this caller waited while it held the lock, e.g.
C<< sharedarea_wlock: area 0: timed out after 0.5 s waiting for the lock: ... >>.

A signal delivered while C<rlock> or C<wlock> waits runs its C<%SIG> handler
promptly; if the handler dies, the call ends with that exception and holds
nothing, otherwise the wait goes on for the time that is left.

A process that dies holding the lock (killed by SIGKILL, say) blocks the
others for about 0.2 s, however many died at once (the waiters check the
holders every 100 ms; F<README.md>, "The lock", says exactly when), and a
live holder is never taken for dead: not when C</proc> hides it (C<hidepid>,
setuid or non-dumpable workers), not without C</proc>, not in another pid
namespace.  A thread that exits holding the lock releases it.  The process
that then takes the lock gets it with a warning saying that it recovered the
lock from a dead holder.  A writer killed in the middle of several writes
leaves them half done: the lock is recovered, not the data.

=head2 The older names: readbyte, writebyte, readlong, writelong, inclong

As in uWSGI 2.0, C<uwsgi::sharedarea_readbyte($id, $pos)>,
C<uwsgi::sharedarea_writebyte($id, $pos, $value)>,
C<uwsgi::sharedarea_readlong($id, $pos)>,
C<uwsgi::sharedarea_writelong($id, $pos, $value)> and
C<uwsgi::sharedarea_inclong($id, $pos[, $amount])> are aliases of
C<sharedarea_read8>, C<sharedarea_write8>, C<sharedarea_read64>,
C<sharedarea_write64> and C<sharedarea_inc64>: the area id first, the same
answers (C<inclong> returns the new value, the writes return 1); an error
names the name that was called.  The same names mean the same in the Python
binding.

=head1 FUNCTIONS IN PACKAGE SharedArea

=head2 SharedArea::init($spec)

Creates an area from C<$spec> (see L</Areas>) and returns its id.

=head2 SharedArea::count()

The number of areas this process has.

=head2 SharedArea::info($id)

A hash reference describing the area:

  { size        => 16384,       # bytes
    pages       => 4,
    page_size   => 4096,
    updates     => 12,          # the update counter
    used        => 0,           # see set_used
    honour_used => 0,           # 1 when reads with len 0 stop at used
    recoveries  => 0,           # locks recovered from dead holders
    backing     => 'anonymous', # or file, fd, named, pointer
  }

=head2 SharedArea::set_used($id, $used)

Publishes how many bytes of the area are valid and turns C<honour_used> on:
from then on reads, C<readfast> and WebSocket sends with no length (or length 0)
stop at C<$used>.  C<$used> must not exceed the size.

=head2 SharedArea::honour_used($id, $on)

Turns the honouring of C<used> on or off (C<$on> is a boolean).

=head2 SharedArea::wlock_guard($id[, $timeout]), SharedArea::rlock_guard($id[, $timeout])

The way to lock in Perl: takes the write (or read) lock, as C<sharedarea_wlock>
does (same C<$timeout>, same errors, named C<SharedArea::wlock_guard>), and
returns a guard object that holds it.  The lock is released when the guard
goes out of scope - at the end of the block, on C<return>, on C<last>, and
when a C<die> unwinds the scope - so no path leaves the lock held:

  sub transfer {
      my ($from, $to, $n) = @_;
      my $guard = SharedArea::wlock_guard(0, 2);    # at most 2 s
      my $have = uwsgi::sharedarea_read64(0, $from);
      die "not enough\n" if $have < $n;             # the lock is released here too
      uwsgi::sharedarea_write64(0, $from, $have - $n);
      uwsgi::sharedarea_inc64(0, $to, $n);
      return;                                        # ... and here
  }

C<< $guard->release >> releases it earlier (once; the guard then does
nothing).  A child created by C<fork> inherits the guard object but not the
lock: its copy releases nothing.

=head2 SharedArea::held($id)

How this thread holds the area's lock: 0 (not at all), 1 (the read lock) or
2 (the write lock).

=head2 SharedArea::unlock_all($id)

Releases every level of this thread's hold on the area's lock (nested
C<rlock>/C<wlock> included); returns how many it released (0 when it held
none).  L<Plack::Middleware::SharedArea> calls it at the end of a request
that left a lock held.

=head2 SharedArea::updates($id)

The area's update counter now.

=head2 SharedArea::notify_fd($id)

A file descriptor that becomes readable after area C<$id> is updated, for
an event loop that must not block in C<sharedarea_wait>: when it is
readable, C<sysread> its 8 bytes (that re-arms it), then read the area.
The same descriptor on every call in a process; do not close it. Most code
wants L<SharedArea::Notify>, which watches it from AnyEvent or Mojo::IOLoop.

=head2 SharedArea::abi_version()

The version of the C ABI of the linked core.

=head2 SharedArea::remove($name)

Removes the named area C<$name> (as in C<name=NAME>, with or without a
leading C</>) and returns 1.  Processes that have it keep using their memory
until they exit (see L</Named areas over their life>).  Dies, removing
nothing, when there is no such name (C<no area named "NAME">), when the
object is not a sharedarea (another program's shared memory), or when the
operating system refuses (another user's area).

=head1 Migrating from uWSGI

An application that calls C<uwsgi::sharedarea_*> runs unchanged; what changes
is around it:

=over 4

=item * Load the module

Add C<use SharedArea;> to the application, or load it from the server's
command line (C<starman -MSharedArea>, C<plackup -MSharedArea>): then the
application's code needs no change at all.  Inside uWSGI, C<use SharedArea;>
replaces none of uWSGI's own functions.

=item * Create the areas

Instead of C<--sharedarea 4>, either C<use SharedArea '4';> or keep the spec
in the environment, C<UWSGI_SHAREDAREA=4> - the variable uWSGI itself reads
for that option.  Several areas: C<UWSGI_SHAREDAREA='4;size=1M'>.

=item * Preload for anonymous areas

uWSGI creates the areas in the master before forking the workers.  Under a
preforking PSGI server do the same: load the app before the fork
(C<starman --preload-app>), or create the areas when the server starts
(C<UWSGI_SHAREDAREA=4 starman -MSharedArea app.psgi>); otherwise every worker
gets an anonymous area of its own.

=item * Or use a named area

C<name=myapp,size=64K> is ours, not uWSGI's: a POSIX shared-memory object that
any process attaches to by name - workers of a server that does not preload,
separate servers, a C program producing data.

=item * Character strings

The C<uwsgi::> functions write a string's internal bytes, as uWSGI does
(C<SvPV>): a character string - anything from C<Encode::decode>, a JSON
decoder or a C<use utf8> literal - is written as its UTF-8 encoding, wide
characters included, and read back as those bytes:

  my $s = Encode::decode('UTF-8', "caf\xc3\xa9");   # 4 characters
  uwsgi::sharedarea_write(0, 0, $s);                 # 5 bytes: caf\xC3\xA9, as under uWSGI
  my $back = Encode::decode('UTF-8', uwsgi::sharedarea_read(0, 0, 5));   # "caf\x{e9}" again

The bytes depend on the string's internal form exactly as they do under
uWSGI: C<"caf\xe9"> as a byte string is 4 bytes, the same characters after
C<utf8::upgrade> are 5.  To write the same bytes whatever the form, encode
first: C<uwsgi::sharedarea_write(0, 0, Encode::encode('UTF-8', $s))>.
C<websocket_send> and C<websocket_send_binary> send the same bytes uWSGI
sends, by the same rule.

=item * Numbers

Numeric arguments are taken as Perl's builtins (and uWSGI's C<SvIV>) take
them: C<0+> overloads honoured, the numeric value cached in the argument (see
L</Errors>).  What uWSGI converts silently into something else dies here,
see the next item.

=item * Errors are stricter and say more

uWSGI dies with C<unable to read from sharedarea 0> for every failure, and
converts nonsense arguments (C<"abc">, C<-1>, C<0.5>) silently.  SharedArea
dies with the function, the area and the cause, and refuses negative,
fractional and non-numeric positions.  C<sharedarea_write(..., undef)> dies
instead of writing nothing.
Extra arguments die with a usage message (uWSGI ignores them).  An empty
write at the very end of the area (C<pos> equal to the size) is in range and
returns 1, as every empty range inside the area does (uWSGI dies there).

=item * Return values

The same as uWSGI's (C<sharedarea_write> 1, C<sharedarea_wait> 1, reads their
bytes), except that C<sharedarea_readfast> returns the byte count (uWSGI's
always dies) and the C<websocket_send*> functions return the number of
payload bytes sent (uWSGI's return C<undef>).

=item * Specs uWSGI accepts and SharedArea refuses

Four specs start under uWSGI and make SharedArea die at startup, because each
hides a mistake that would otherwise give an area of another size or kind.
The message says what uWSGI would have done and the spec to write:

=over 4

=item - C<pages=2,size=100>: uWSGI takes C<pages=> and ignores C<size=>; write
C<pages=2> (or the C<size=> you meant).

=item - an unknown key, C<foo=1,pages=1>: uWSGI ignores it; write C<pages=1>
(or correct a misspelt key).

=item - a key given twice, C<pages=1,pages=2>: uWSGI takes the last; write
C<pages=2>.

=item - C<offset=> without C<file=> or C<fd=>, C<size=4096,offset=4096>:
uWSGI ignores it; write C<size=4096>.

=back

For example:

  SharedArea::init: invalid spec "pages=2,size=100": give pages= or size=, not
  both; uWSGI takes pages= and ignores size=, and would read this spec as
  "pages=2": write that (or fix the spec if that is not what you meant)

=item * The older names take the id first

C<sharedarea_readbyte>, C<sharedarea_writebyte>, C<sharedarea_readlong>,
C<sharedarea_writelong> and C<sharedarea_inclong> are, as in uWSGI 2.0,
aliases of C<read8>, C<write8>, C<read64>, C<write64> and C<inc64> with the
area id first (C<uwsgi::sharedarea_readlong(0, 0)>).  The single-area form of
uWSGI before 1.9.21 (C<readlong($pos)>) dies with the usage.

=item * Inside uWSGI itself

Loaded inside a real uWSGI host, C<use SharedArea> adds no C<uwsgi::> name
and creates no area from C<UWSGI_SHAREDAREA> (uWSGI already did): uWSGI's own
functions keep working on uWSGI's C<--sharedarea> areas, and nothing would
quietly address a different area than its neighbours.  The C<SharedArea::>
functions still work on areas created with C<SharedArea::init>.

=item * Fixed uWSGI bugs

=over 4

=item - C<sharedarea_readfast> works: uWSGI's dies whenever the read succeeds,
never grows the buffer (a heap overflow when it is too small) and writes into
constants and copy-on-write siblings.

=item - C<sharedarea_read> checks the range before allocating: in uWSGI a large
or negative length kills the worker, and an explicit length 0 overflows the heap.

=item - Negative area ids die; in uWSGI they crash the worker.

=item - 64-bit inc/dec check C<pos + 8>, not C<pos + 4>: they never write past the end.

=item - C<sharedarea_wait> wakes on the update itself, not by polling every 100 ms;
a fractional timeout is honoured (uWSGI waits forever), a negative freq dies
(uWSGI hangs forever), and a timeout says it timed out.

=item - Calling a sharedarea function while holding that area's lock works (uWSGI
hangs the worker or corrupts the lock); C<unlock> without a lock dies.

=item - A worker killed while holding an area's lock blocks the others for about
0.2 s (uWSGI hangs every worker until a restart).

=item - C<ptr=> in a spec is an error (uWSGI ignores it); C<file=> without a size
maps the whole file (uWSGI fails); large page counts do not overflow.

=item - C<websocket_send_from_sharedarea> sends from C<pos> and checks the length
(uWSGI always sends from byte 0 and reads past the end of the area).

=item - A C<%SIG> handler that dies during C<sharedarea_wait> leaves the area's
lock free (uWSGI's failure path releases a lock it does not hold, which
wedges the lock for every worker).

=item - Area ids are not truncated to a C C<int>: C<sharedarea_read(2**32 + 1, 0, 1)>
dies with C<area 4294967297: no such area (...)> (uWSGI reads area 1, and a write
there lands in area 1).

=item - A C<sharedarea_wait> timeout above 2**31 seconds is honoured as a very long
wait (uWSGI truncates it: C<2**32 + 1> waits one second).

=back

=back

=head1 WHEN YOU OUTGROW ONE HOST

An area is memory of one host: processes on two machines cannot share it.
When the workers spread over several hosts, the natural next step is Redis
(or a server speaking its protocol), and the names map closely:

=over 4

=item * Counters: C<sharedarea_inc64($id, $pos, $n)> becomes C<INCRBY key $n>
(one key per counter, e.g. C<myapp:hits> for the counter at C<$pos>);
C<read64> becomes C<GET>, C<write64> C<SET>.  Each is one network round trip
instead of about 30 ns.

=item * Bytes: C<sharedarea_write($id, $pos, $bytes)> becomes C<SETRANGE key
$pos $bytes> and C<sharedarea_read($id, $pos, $len)> C<GETRANGE key $pos
$pos+$len-1> on one string key (Redis strings are binary-safe); C<set_used>
is a second key, written in the same C<MULTI>/C<EXEC>.

=item * Waiting for updates: C<sharedarea_wait> becomes C<SUBSCRIBE> to a
channel (C<myapp:updates>) that every writer C<PUBLISH>es to after writing,
or keyspace notifications.  Pub/sub delivers only to subscribers connected at
that moment: keep the update count in a key (C<INCR>) and compare it after a
reconnect, as C<updates> lets you do here.

=item * Locking: C<wlock>/C<unlock> around several operations becomes
C<MULTI>/C<EXEC> (with C<WATCH> for read-modify-write) or a Lua script, which
Redis runs atomically.  A lock key (C<SET key token NX PX ttl>) is a lease:
it is freed by expiry, not by noticing that its holder died.

=item * WebSocket frames from an area: the frame is sent from the bytes a
C<GET> returned, one copy more than C<websocket_send_binary_from_sharedarea>.

=back

=head1 SEE ALSO

L<SharedArea::WebSocket>, L<Plack::Middleware::SharedArea>, the uWSGI
documentation of the sharedarea subsystem.

Other ways to share data between processes, and when to pick them (the
figures were measured side by side with SharedArea by F<bench/perl-bench.pl>,
one run on a 2-core VM; see F<README.md>):

=over 4

=item * L<Cache::FastMmap>: a shared-memory I<cache> of Perl values with
keys, expiry and LRU eviction.  Pick it to cache computed values by key.  A
get or set costs about 3-4 E<micro>s (SharedArea's C<read64>/C<inc64>: about 25-33
ns); two processes incrementing one counter with C<get_and_set> took 6.7 E<micro>s
per increment, SharedArea's C<inc64> 56 ns.

=item * L<File::Map>: maps a file into a Perl string.  Reading it is as fast
as SharedArea's reads (C<substr> of 8 bytes: 36 ns) but there is no lock,
no atomic counter and no wait: with C<flock> around an increment, two
processes took 1.2 E<micro>s per increment.  Pick it to read large files without
copying them.

=item * L<IPC::Shareable>: ties a Perl variable to System V shared memory and
serialises the whole structure on every access (not measured here).  Pick it
for nested Perl data shared by a few processes that touch it rarely.

=item * Redis: a server, reached over a socket (a round trip per operation,
not measured here), shared by many hosts, with persistence.  Pick it when
the processes are on more than one host (see L</WHEN YOU OUTGROW ONE HOST>).

=back

Pick SharedArea for fixed-layout bytes and integer counters shared by the
processes of one host, updated often, with waiters woken by the update
itself, and uWSGI's API.  The C library (C<make install-c>,
C<pkg-config sharedarea>, F<sharedarea.h>) and the C<sharedarea> command
(C<sharedarea ls>, C<info>, C<dump>, C<get>/C<set>/C<inc>, C<watch>, C<rm>)
come with this distribution; see its F<README.md>.

=head1 BUGS

SharedArea runs on Linux only (it needs futex(2), F</dev/shm> and F</proc>).
Report bugs at L<https://github.com/sharedarea/sharedarea/issues>, with the
message the failing call died with and, for the C library,
C<sharedarea_last_error()>.

=head1 AUTHOR

SharedArea authors.

=head1 COPYRIGHT AND LICENSE

Copyright (c) 2026 SharedArea authors.

This is free software under the MIT license: see the file F<LICENSE> in the
distribution.

=cut
