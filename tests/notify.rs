//! The update descriptor (`sharedarea_notify_fd`): readable after another
//! process updates the area, re-armed by reading it, and a child's own after fork.

mod common;
use common::*;

use std::time::Duration;

fn readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

fn drain(fd: i32) -> bool {
    let mut v: u64 = 0;
    unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) == 8 }
}

#[test]
fn another_process_update_makes_the_descriptor_readable_in_parent_and_child() {
    let _g = serial();
    let id = must_init("1");
    let fd = unsafe { sa::sharedarea_notify_fd(id) };
    assert!(fd >= 0, "notify_fd: {}", last_error());
    assert_eq!(unsafe { sa::sharedarea_notify_fd(id) }, fd);
    assert!(
        unsafe { sa::sharedarea_notify_fd(12345) } < 0,
        "an unknown area is refused"
    );
    let sc = Scratch::new(4);
    // a child: its own counter on the same number, signalled by the parent's writes
    let mut child = {
        let sc = &sc;
        fork_child(move || {
            let cfd = unsafe { sa::sharedarea_notify_fd(id) };
            if cfd != fd {
                return child_fail(2, &format!("the child's descriptor is {cfd}, not {fd}"));
            }
            while drain(cfd) {}
            sc.set(0, 1);
            if !readable(cfd, 5000) {
                return child_fail(3, "the parent's update did not reach the child");
            }
            drain(cfd);
            sc.set(1, 1);
            0
        })
    };
    assert!(
        sc.wait_for(0, 1, Duration::from_secs(5)),
        "the child started"
    );
    while drain(fd) {}
    must_write(id, 0, b"x");
    assert!(
        sc.wait_for(1, 1, Duration::from_secs(5)),
        "the child was told"
    );
    assert!(readable(fd, 5000), "the parent was told too");
    assert!(drain(fd));
    assert!(!readable(fd, 50), "reading re-arms it");
    assert!(matches!(
        child.wait(Duration::from_secs(5)),
        Ok(Exit::Code(0))
    ));
    // a write by another process
    let mut writer = fork_child(move || {
        must_write(id, 0, b"y");
        0
    });
    assert!(readable(fd, 5000), "another process's write");
    assert!(matches!(
        writer.wait(Duration::from_secs(5)),
        Ok(Exit::Code(0))
    ));
}
