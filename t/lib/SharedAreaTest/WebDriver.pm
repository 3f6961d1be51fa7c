package SharedAreaTest::WebDriver;

# Drives headless Chromium through chromedriver with the W3C WebDriver
# protocol, over core Perl only (HTTP::Tiny + JSON::PP). chromedriver runs in
# its own process group on 127.0.0.1 with a fresh --user-data-dir; quit()
# (and END, and DESTROY) stop the whole group, so no browser outlives a test.

use strict;
use warnings;

use Carp qw(croak);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP ();
use MIME::Base64 qw(decode_base64);
use POSIX qw(WNOHANG _exit setsid);
use SharedAreaTest::Proc ();
use Time::HiRes qw(time sleep);

my %LIVE;    # chromedriver pid => object, for END cleanup
my $OWNER = $$;

=head1 NAME

SharedAreaTest::WebDriver - a minimal W3C WebDriver client for headless Chromium in tests

=head1 SYNOPSIS

    my ($why) = SharedAreaTest::WebDriver::unavailable();
    plan skip_all => $why if $why;
    my $wd = SharedAreaTest::WebDriver->start(log => "t/tmp/chromedriver.log");
    $wd->get("http://127.0.0.1:$port/");
    my $n = $wd->execute('return window.framesReceived');
    $wd->screenshot("t/tmp/page.png");
    $wd->quit;

=head1 FUNCTIONS

=head2 unavailable()

Returns a reason (a string) when Chromium or chromedriver is not installed,
or nothing when both are.

=cut

our $CHROMIUM     = $ENV{SHAREDAREA_CHROMIUM}     // SharedAreaTest::Proc::find_program('chromium') // 'chromium';
our $CHROMEDRIVER = $ENV{SHAREDAREA_CHROMEDRIVER} // SharedAreaTest::Proc::find_program('chromedriver') // 'chromedriver';

sub unavailable {
    return "no Chromium ($CHROMIUM) on PATH (Debian: apt-get install chromium chromium-driver)" unless -x $CHROMIUM;
    return "no chromedriver ($CHROMEDRIVER) on PATH (Debian: apt-get install chromium-driver)"  unless -x $CHROMEDRIVER;
    return;
}

sub _free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1, ReuseAddr => 1)
        or die "SharedAreaTest::WebDriver: cannot find a free port: $!\n";
    my $port = $s->sockport;
    close $s;
    return $port;
}

=head2 start(log => $path, timeout => 30, window => [1280, 900])

Starts chromedriver (its own process group, output to C<log>) and a
headless Chromium session with the flags this machine needs
(C<--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
--disable-background-networking --disable-component-update --disable-sync>)
and a fresh user-data directory. Dies, naming the cause, if either does not
come up within C<timeout> seconds.

=cut

sub start {
    my ($class, %a) = @_;
    my $log     = $a{log} or croak 'SharedAreaTest::WebDriver->start: log missing';
    my $timeout = $a{timeout} || 30;
    my ($w, $h) = @{ $a{window} || [1280, 900] };
    if (my $why = unavailable()) { die "SharedAreaTest::WebDriver->start: $why\n" }

    my $port    = _free_port();
    my $profile = tempdir('sharedarea-chromium-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $pid     = fork;
    defined $pid or die "SharedAreaTest::WebDriver->start: fork failed: $!\n";
    if (!$pid) {
        setsid();
        open STDIN,  '<',  '/dev/null';
        open STDOUT, '>>', $log or _exit(97);
        open STDERR, '>&', \*STDOUT or _exit(97);
        exec $CHROMEDRIVER, "--port=$port", '--allowed-ips=127.0.0.1' or _exit(98);
    }
    my $self = bless {
        pid => $pid, port => $port, log => $log, profile => $profile,
        http => HTTP::Tiny->new(timeout => $timeout, keep_alive => 0),
        base => "http://127.0.0.1:$port",
    }, $class;
    $LIVE{$pid} = $self;

    my $deadline = time + $timeout;
    while (1) {
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $LIVE{$pid};
            die "SharedAreaTest::WebDriver->start: chromedriver exited with status $?; log:\n" . _tail($log);
        }
        my $r = HTTP::Tiny->new(timeout => 2)->get("$self->{base}/status");
        last if $r->{success} && eval { JSON::PP::decode_json($r->{content})->{value}{ready} };
        if (time > $deadline) {
            $self->quit;
            die "SharedAreaTest::WebDriver->start: chromedriver not ready on port $port within $timeout s; log:\n"
                . _tail($log);
        }
        sleep 0.1;
    }

    my $caps = {
        capabilities => {
            alwaysMatch => {
                browserName          => 'chrome',
                pageLoadStrategy     => 'normal',
                'goog:chromeOptions' => {
                    binary => $CHROMIUM,
                    args   => [
                        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                        '--disable-background-networking', '--disable-component-update', '--disable-sync',
                        '--disable-dev-shm-usage', "--user-data-dir=$profile", "--window-size=$w,$h",
                    ],
                },
            },
        },
    };
    my $v = eval { $self->_call(POST => '/session', $caps) };
    if (!$v) {
        my $err = $@;
        $self->quit;
        die "SharedAreaTest::WebDriver->start: no browser session: $err";
    }
    $self->{session} = $v->{sessionId} or do {
        $self->quit;
        die "SharedAreaTest::WebDriver->start: no sessionId in the answer\n";
    };
    return $self;
}

sub _tail {
    my ($file) = @_;
    open my $fh, '<', $file or return "(no log at $file)";
    local $/;
    my $c = <$fh> // '';
    return length $c > 3000 ? '...' . substr($c, -3000) : $c;
}

# One WebDriver command; returns its "value", dies with the protocol's error.
sub _call {
    my ($self, $method, $path, $body) = @_;
    my %opt = (headers => { 'Content-Type' => 'application/json; charset=utf-8' });
    $opt{content} = JSON::PP::encode_json($body) if defined $body;
    my $r = $self->{http}->request($method, $self->{base} . $path, \%opt);
    my $data = eval { JSON::PP::decode_json($r->{content}) };
    if (!$r->{success} || !$data) {
        my $msg = $data && ref $data->{value} eq 'HASH'
            ? "$data->{value}{error}: " . (split /\n/, $data->{value}{message} // '')[0]
            : "HTTP $r->{status} $r->{reason}" . ($r->{status} == 599 ? ": $r->{content}" : '');
        $msg =~ s/\s+\z//;
        die "SharedAreaTest::WebDriver: $method $path failed: $msg\n";
    }
    return $data->{value};
}

sub _s { my ($self) = @_; croak 'SharedAreaTest::WebDriver: no session' unless $self->{session}; "/session/$self->{session}" }

=head1 METHODS

=head2 get($url)

Navigates the current window to C<$url> and waits for the page load.

=cut

sub get { my ($self, $url) = @_; $self->_call(POST => $self->_s . '/url', { url => $url }); return }

=head2 execute($script, @args)

Runs C<$script> (a function body; use C<return>) in the page and returns its
value, decoded from JSON.

=cut

sub execute {
    my ($self, $script, @args) = @_;
    return $self->_call(POST => $self->_s . '/execute/sync', { script => $script, args => \@args });
}

=head2 wait_until($script, $timeout_s, @args)

Runs C<$script> every 100 ms until it returns a true value (returned) or
C<$timeout_s> passes (returns undef).

=cut

sub wait_until {
    my ($self, $script, $timeout, @args) = @_;
    my $deadline = time + $timeout;
    while (1) {
        my $v = $self->execute($script, @args);
        return $v if $v;
        return undef if time > $deadline;
        sleep 0.1;
    }
}

=head2 new_window()

Opens a new tab and switches to it; returns its handle. C<switch_to($handle)>
switches back; C<window_handle()> is the current one.

=cut

sub window_handle { my ($self) = @_; return $self->_call(GET => $self->_s . '/window') }

sub new_window {
    my ($self) = @_;
    my $v = $self->_call(POST => $self->_s . '/window/new', { type => 'tab' });
    $self->switch_to($v->{handle});
    return $v->{handle};
}

sub switch_to { my ($self, $h) = @_; $self->_call(POST => $self->_s . '/window', { handle => $h }); return }

=head2 screenshot($path)

Saves a PNG of the current window's viewport to C<$path>; returns its size
in bytes.

=cut

sub screenshot {
    my ($self, $path) = @_;
    my $png = decode_base64($self->_call(GET => $self->_s . '/screenshot'));
    open my $fh, '>:raw', $path or die "SharedAreaTest::WebDriver->screenshot: cannot write $path: $!\n";
    print {$fh} $png;
    close $fh or die "SharedAreaTest::WebDriver->screenshot: cannot write $path: $!\n";
    return length $png;
}

=head2 quit()

Ends the browser session (bounded) and stops chromedriver's whole process
group (TERM, then KILL after 5 s). Safe to call twice.

=cut

sub quit {
    my ($self) = @_;
    my $pid = $self->{pid} or return;
    if ($self->{session}) {
        my $http = $self->{http};
        $self->{http} = HTTP::Tiny->new(timeout => 10);
        eval { $self->_call(DELETE => $self->_s) };
        $self->{http} = $http;
        delete $self->{session};
    }
    SharedAreaTest::Proc::stop_process_group($pid);
    delete $LIVE{$pid};
    delete $self->{pid};
    return;
}

=head2 leftovers()

Pids of processes still running with this session's user-data directory on
their command line (Chromium and its helpers): empty after a clean quit().

=cut

sub leftovers {
    my ($self) = @_;
    my @pids;
    for my $dir (glob '/proc/[0-9]*') {
        open my $fh, '<', "$dir/cmdline" or next;
        local $/;
        my $cmd = <$fh> // '';
        push @pids, $dir =~ s{^/proc/}{}r if index($cmd, $self->{profile}) >= 0;
    }
    return @pids;
}

sub DESTROY { my ($self) = @_; $self->quit if $$ == $OWNER && $self->{pid} }

END { if ($$ == $OWNER) { $_->quit for values %LIVE } }

1;
