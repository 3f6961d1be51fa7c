package SharedAreaTest::Proc;

# Helpers for the real-process tests: start PSGI servers (Starman, uWSGI) in
# their own process group on 127.0.0.1, talk HTTP/1.0 to them with bounded
# waits, fan requests out over forked client processes, and always stop what
# was started (process group, TERM then KILL) -- also when a test dies.

use strict;
use warnings;

use Carp qw(croak);
use Config;
use Cwd qw(abs_path);
use Errno qw(EINTR);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG _exit setsid);
use Time::HiRes qw(time sleep);

our @EXPORT_OK = qw(
    repo_root blib_dirs require_blib free_port tmpdir write_file slurp
    start_server start_starman start_uwsgi uwsgi_psgi_available stop_server
    http_get http_send http_finish run_clients wait_child guard_test
    spawn_perl finish_perl run_perl stop_process_group
    have_module find_program needs
);

my $OWNER = $$;
my %LIVE;    # pgid => server record, for END/alarm cleanup

=head1 NAME

SharedAreaTest::Proc - start, query and stop real server processes for the SharedArea tests

=head1 FUNCTIONS

=head2 repo_root()

The absolute path of the source tree (the directory holding C<t/>).

=cut

sub repo_root {
    return abs_path(File::Spec->catdir(dirname(abs_path(__FILE__)), '..', '..', '..'));
}

=head2 blib_dirs()

The C<blib/lib> and C<blib/arch> directories of the built module.

=cut

sub blib_dirs {
    my $root = repo_root();
    return ("$root/blib/lib", "$root/blib/arch");
}

=head2 require_blib()

Dies with a clear message unless the XS module has been built
(C<perl Makefile.PL && make>); returns the blib directories.

=cut

sub require_blib {
    my @dirs = blib_dirs();
    for my $d (@dirs) {
        -d $d or die "SharedArea is not built ($d missing): run 'perl Makefile.PL && make' in " . repo_root() . "\n";
    }
    -e "$dirs[0]/SharedArea.pm"
        or die "SharedArea is not built ($dirs[0]/SharedArea.pm missing): run 'perl Makefile.PL && make'\n";
    return @dirs;
}

=head2 free_port()

A currently free TCP port on 127.0.0.1.

=cut

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1)
        or croak "free_port: cannot bind a port on 127.0.0.1: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

=head2 have_module($name) / find_program($name) / needs(modules => [...], programs => [...])

C<have_module> says whether a module is installed (without loading it);
C<find_program> returns the path of a program found on C<PATH> (or next to
this perl, where CPAN clients install scripts), or undef. C<needs> skips the
whole test file, saying what is missing, unless everything is there: call it
before any test runs (in a C<BEGIN> block when the file C<use>s the modules).

C<SHAREDAREA_TEST_HIDE> (space-separated module and program names) makes them
count as missing, so a full machine can check what a CPAN tester's sees; with
C<PERL5OPT=-MSharedAreaTest::Hide> loading them fails too.

=cut

sub _hidden { my %h = map { $_ => 1 } split ' ', $ENV{SHAREDAREA_TEST_HIDE} // ''; return \%h }

sub have_module {
    my ($name) = @_;
    return 0 if _hidden()->{$name};
    (my $file = "$name.pm") =~ s{::}{/}g;
    return scalar grep { !ref && -f "$_/$file" } @INC;
}

sub find_program {
    my ($name) = @_;
    return undef if _hidden()->{$name};
    my @dirs = (split(/:/, $ENV{PATH} // ''), dirname($^X),
                grep { defined && length } @Config{qw(installsitescript installscript installsitebin installbin)});
    for my $d (grep { length } @dirs) {
        return "$d/$name" if -f "$d/$name" && -x _;
    }
    return undef;
}

sub needs {
    my (%w) = @_;
    my @missing = ((grep { !have_module($_) } @{ $w{modules} || [] }),
                   (map { "the $_ program" } grep { !find_program($_) } @{ $w{programs} || [] }));
    return 1 unless @missing;
    require Test::More;
    Test::More::plan(skip_all => 'needs ' . join(', ', @missing) . ' (not installed)');
    return 0;
}

=head2 tmpdir()

A fresh temporary directory removed when the test ends.

=cut

sub tmpdir { return tempdir('sharedarea-t-XXXXXX', TMPDIR => 1, CLEANUP => 1) }

=head2 write_file($path, $content) / slurp($path)

Write or read a whole file (bytes).

=cut

sub write_file {
    my ($path, $content) = @_;
    open my $fh, '>', $path or die "write_file: cannot open $path: $!\n";
    binmode $fh;
    print {$fh} $content or die "write_file: cannot write $path: $!\n";
    close $fh or die "write_file: cannot close $path: $!\n";
    return $path;
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return undef;
    binmode $fh;
    local $/;
    my $c = <$fh>;
    return defined $c ? $c : '';
}

=head2 guard_test($seconds)

Arms a whole-test alarm: when it fires, every server started here is killed
and the test dies (no test can hang).

=cut

sub guard_test {
    my ($secs) = @_;
    $SIG{ALRM} = sub {
        _stop_all();
        die "test exceeded its time limit of $secs s\n";
    };
    alarm $secs;
    return;
}

=head2 start_server(cmd => [...], port => $port, env => {...}, log => $path, ready_path => '/', timeout => 20)

Starts C<cmd> in a new session (its own process group), stdout and stderr
going to C<log>, and waits (bounded) until C<GET ready_path> on the port
answers. Returns a record C<{ pid, port, log }>; dies with the log's tail if
the server exits or does not answer in time.

=cut

sub start_server {
    my %a = @_;
    my $port = $a{port} or croak 'start_server: port missing';
    my $log  = $a{log}  or croak 'start_server: log missing';
    my $pid = fork;
    defined $pid or die "start_server: fork failed: $!\n";
    if (!$pid) {
        setsid();
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log or _exit(97);
        open STDERR, '>&', \*STDOUT or _exit(97);
        $ENV{$_} = $a{env}{$_} for keys %{ $a{env} || {} };
        delete $ENV{$_} for @{ $a{unset_env} || [] };
        chdir $a{cwd} if $a{cwd};
        exec @{ $a{cmd} } or _exit(98);
    }
    my $srv = { pid => $pid, port => $port, log => $log, name => $a{name} || $a{cmd}[0] };
    $LIVE{$pid} = $srv;
    my $deadline = time + ($a{timeout} || 20);
    my $path = $a{ready_path} || '/';
    while (1) {
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $LIVE{$pid};
            die "start_server: $srv->{name} exited with status $? before answering on port $port; log:\n"
                . _tail($log);
        }
        my ($st) = eval { http_get($port, $path, timeout => 2) };
        return $srv if defined $st && $st =~ /^\d+$/;
        if (time > $deadline) {
            stop_server($srv);
            die "start_server: $srv->{name} did not answer GET $path on 127.0.0.1:$port within "
                . ($a{timeout} || 20) . " s; log:\n" . _tail($log);
        }
        sleep 0.1;
    }
}

sub _tail {
    my ($log) = @_;
    my $c = slurp($log);
    return '(no log)' unless defined $c;
    return length $c > 4000 ? '...' . substr($c, -4000) : $c;
}

=head2 start_starman(app => $psgi, workers => 4, preload => 1, env => {...}, dir => $tmp, ready_path => '/')

Starts Starman on a free port of 127.0.0.1 with the built module on C<-I>
and C<PERL5LIB>.

=cut

sub start_starman {
    my %a = @_;
    my @inc = require_blib();
    my $port = free_port();
    my $dir = $a{dir} || tmpdir();
    my $starman = find_program('starman') or croak 'start_starman: no starman program on PATH';
    my @cmd = ($^X, (map { ('-I', $_) } @inc), $starman,
        (map { ('-I', $_) } @inc),
        '--workers', $a{workers} || 4,
        '--listen', "127.0.0.1:$port",
        ($a{preload} ? ('--preload-app') : ()),
        $a{app});
    my %env = (PERL5LIB => join(':', @inc, grep { defined && length } $ENV{PERL5LIB}), %{ $a{env} || {} });
    return start_server(
        cmd => \@cmd, port => $port, env => \%env, unset_env => $a{unset_env},
        log => "$dir/starman-$port.log", ready_path => $a{ready_path}, name => 'starman',
        timeout => $a{timeout},
    );
}

=head2 uwsgi_psgi_available()

True when a C<uwsgi> program (on C<PATH>) and its psgi plugin (Debian's
plugin directory) are installed.

=cut

sub uwsgi_psgi_available {
    return 0 unless find_program('uwsgi');
    return scalar(grep { -e $_ } glob('/usr/lib/uwsgi/plugins/psgi_plugin.so /usr/lib/uwsgi/plugins/psgi*_plugin.so')) ? 1 : 0;
}

=head2 start_uwsgi(app => $psgi, processes => 2, sharedarea => '4', dir => $tmp, ready_path => '/')

Starts real uWSGI with the psgi plugin (C<--master --die-on-term
--need-app>) on a free port of 127.0.0.1.

=cut

sub start_uwsgi {
    my %a = @_;
    my @inc = require_blib();
    my $port = free_port();
    my $dir = $a{dir} || tmpdir();
    my @cmd = (find_program('uwsgi') // croak('start_uwsgi: no uwsgi program on PATH'), '--plugin', 'psgi', '--http-socket', "127.0.0.1:$port",
        '--psgi', $a{app}, (defined $a{sharedarea} ? ('--sharedarea', $a{sharedarea}) : ()),
        '--master', '--processes', $a{processes} || 2, '--die-on-term', '--need-app',
        '--perl-no-die-catch', '--disable-logging');
    my %env = (PERL5LIB => join(':', @inc, grep { defined && length } $ENV{PERL5LIB}), %{ $a{env} || {} });
    return start_server(
        cmd => \@cmd, port => $port, env => \%env,
        unset_env => [ 'UWSGI_SHAREDAREA', @{ $a{unset_env} || [] } ],
        log => "$dir/uwsgi-$port.log", ready_path => $a{ready_path}, name => 'uwsgi',
        timeout => $a{timeout},
    );
}

=head2 stop_server($srv)

TERM to the server's process group, then KILL after 5 s; reaps the leader.

=cut

sub stop_server {
    my ($srv) = @_;
    return unless $srv && $srv->{pid} && $LIVE{ $srv->{pid} };
    stop_process_group($srv->{pid});
    delete $LIVE{ $srv->{pid} };
    return;
}

# TERM to the process group led by PID, up to 5 s for the leader to end, then
# KILL to the whole group (workers may outlive the leader for a moment), reaped.
sub stop_process_group {
    my ($pid) = @_;
    kill 'TERM', -$pid;
    my $deadline = time + 5;
    my $reaped = 0;
    while (time < $deadline) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid || $r == -1) { $reaped = 1; last }
        sleep 0.05;
    }
    kill 'KILL', -$pid;
    waitpid($pid, 0) unless $reaped;
    return;
}

sub _stop_all { stop_server($_) for values %LIVE }

END { _stop_all() if $$ == $OWNER }

=head2 http_send($port, $path, %opt)

Connects to 127.0.0.1:$port and sends C<GET $path HTTP/1.0> with
C<Connection: close>; returns the socket (for a request left pending).

=cut

sub http_send {
    my ($port, $path, %o) = @_;
    my $s = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => $o{timeout} || 5,
    ) or die "http_send GET $path: cannot connect to 127.0.0.1:$port: $!\n";
    $s->autoflush(1);
    my $req = "GET $path HTTP/1.0\r\nHost: 127.0.0.1:$port\r\nConnection: close\r\n\r\n";
    syswrite($s, $req) == length $req or die "http_send GET $path: short write: $!\n";
    return $s;
}

=head2 http_finish($sock, %opt)

Reads the whole response (until EOF) within C<timeout> seconds (default 10).
Returns C<($status, $body, \%headers)>; returns C<()> on timeout when
C<allow_timeout> is set (the socket stays open and what was read is kept, so
a later call continues), else dies. A connection closed without any reply
returns status C<'closed'>.

=cut

sub http_finish {
    my ($s, %o) = @_;
    my $deadline = time + ($o{timeout} || 10);
    my $sel = IO::Select->new($s);
    my $buf = \${*$s}{sharedarea_test_buf};    # kept across calls that time out
    $$buf = '' unless defined $$buf;
    while (1) {
        my $left = $deadline - time;
        if ($left <= 0) {
            return () if $o{allow_timeout};
            close $s;
            die "http_finish: no complete response within " . ($o{timeout} || 10) . " s (got "
                . length($$buf) . " bytes)\n";
        }
        my @r = $sel->can_read($left);
        next unless @r;
        my $n = sysread($s, $$buf, 65536, length $$buf);
        if (!defined $n) {
            next if $! == EINTR;
            last if length $$buf == 0;    # reset without reply
            die "http_finish: read error: $!\n";
        }
        last if $n == 0;
    }
    $buf = $$buf;
    close $s;
    return ('closed', '', {}) if $buf eq '';
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($status) = $head =~ m{^HTTP/\d\.\d (\d{3})} or die "http_finish: not an HTTP response: " . substr($buf, 0, 200) . "\n";
    my %h;
    for my $line (split /\r\n/, $head) {
        $h{ lc $1 } = $2 if $line =~ /^([^:]+):\s*(.*)$/;
    }
    return ($status, defined $body ? $body : '', \%h);
}

=head2 http_get($port, $path, %opt)

One request, bounded by C<timeout> (default 10 s); returns
C<($status, $body, \%headers)>.

=cut

sub http_get {
    my ($port, $path, %o) = @_;
    my $s = http_send($port, $path, %o);
    return http_finish($s, %o);
}

=head2 wait_child($pid, $timeout)

Waits (bounded) for a child; returns its C<$?>, or kills it (KILL) and
returns undef when it is still running at the deadline.

=cut

sub wait_child {
    my ($pid, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        my $r = waitpid($pid, WNOHANG);
        return $? if $r == $pid;
        return undef if $r == -1;
        sleep 0.02;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
    return undef;
}

=head2 spawn_perl($code, @args) / finish_perl($h, $timeout) / run_perl($timeout, $code, @args)

C<spawn_perl> starts a separate perl (fork then exec of C<$^X -Mblib=ROOT -e
$code @args>: a fresh program, not a forked copy of the test) with stdout
and stderr going to files; returns a handle. C<finish_perl> waits for it
(bounded; killed at the deadline) and returns C<($exit_status, $stdout,
$stderr)> (status undef on timeout). C<run_perl> does both.

=cut

sub spawn_perl {
    my ($code, @args) = @_;
    my $dir = tmpdir();
    my ($out, $err) = ("$dir/out", "$dir/err");
    my $root = repo_root();
    my $pid = fork;
    defined $pid or die "spawn_perl: fork failed: $!\n";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out or _exit(97);
        open STDERR, '>', $err or _exit(97);
        exec $^X, "-Mblib=$root", '-e', $code, @args or _exit(98);
    }
    return { pid => $pid, out => $out, err => $err };
}

sub finish_perl {
    my ($h, $timeout) = @_;
    my $st = wait_child($h->{pid}, $timeout);
    my ($o, $e) = (slurp($h->{out}), slurp($h->{err}));
    return ($st, defined $o ? $o : '', defined $e ? $e : '');
}

sub run_perl {
    my ($timeout, $code, @args) = @_;
    return finish_perl(spawn_perl($code, @args), $timeout);
}

=head2 run_clients(port => $p, clients => 10, requests => 2000, path => sub { my ($i) = @_; ... }, timeout => 60)

Forks C<clients> processes that share C<requests> GETs (request C<$i>, from
0, goes to C<< path->($i) >>), each on a new connection. Waits for all
(bounded by C<timeout>, then kills them). Returns a list of
C<[$i, $status, $body]> in request order; a failed request has status
C<'error'> and the message as body.

=cut

sub run_clients {
    my %a = @_;
    my ($port, $n, $total) = @a{qw(port clients requests)};
    my $dir = tmpdir();
    my @kids;
    for my $c (0 .. $n - 1) {
        my $pid = fork;
        defined $pid or die "run_clients: fork failed: $!\n";
        if (!$pid) {
            $SIG{ALRM} = 'DEFAULT';
            alarm 0;
            my $out = '';
            for (my $i = $c; $i < $total; $i += $n) {
                my $path = $a{path}->($i);
                my ($st, $body) = eval { http_get($port, $path, timeout => $a{request_timeout} || 20) };
                if (!defined $st) { $st = 'error'; ($body = $@ || 'unknown') =~ s/\s+$// }
                $body =~ s/[\r\n\t]+/ /g;
                $out .= "$i\t$st\t$body\n";
            }
            write_file("$dir/client-$c.out", $out);
            _exit(0);
        }
        push @kids, $pid;
    }
    my $deadline = time + ($a{timeout} || 60);
    for my $pid (@kids) {
        my $st = wait_child($pid, $deadline - time > 0 ? $deadline - time : 0.01);
        die "run_clients: a client process did not finish within " . ($a{timeout} || 60) . " s\n"
            unless defined $st;
    }
    my @res;
    for my $c (0 .. $n - 1) {
        my $c_out = slurp("$dir/client-$c.out");
        die "run_clients: client $c wrote no results\n" unless defined $c_out;
        for my $line (split /\n/, $c_out) {
            my ($i, $st, $body) = split /\t/, $line, 3;
            $res[$i] = [ $i, $st, defined $body ? $body : '' ];
        }
    }
    return @res;
}

1;
