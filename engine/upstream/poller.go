package upstream

import (
	"errors"

	"golang.org/x/sys/unix"
)

// wakeID is the epoll key of the eventfd that interrupts wait on Close.
// Connection ids start at 1.
const wakeID = 0

// pollEvents is the readiness we ask for. EPOLLONESHOT disarms a descriptor
// after one report, so exactly one reader owns a ready socket until it
// re-arms with arm. Level-triggered (no EPOLLET) so arming a socket that
// already holds unread bytes reports it at once: data arriving between the
// reader's EAGAIN and its re-arm is never lost. EPOLLRDHUP reports a peer
// half-close as readiness; the reader then sees EOF. EPOLLHUP and EPOLLERR
// are always reported by the kernel and handled the same way: the read
// returns the error.
const pollEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// poller wraps one epoll instance and its wake-up eventfd. Owned by the
// Loop; wait is called by the poller goroutine only, the others from any
// goroutine (epoll_ctl is thread-safe).
type poller struct {
	epfd   int               // static until close
	evfd   int               // static until close
	events []unix.EpollEvent // owned by the poller goroutine
}

func newPoller(batch int) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setID(&ev, wakeID)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, err
	}
	return &poller{epfd: epfd, evfd: evfd, events: make([]unix.EpollEvent, batch)}, nil
}

// setID stores a 64-bit key in the event's data word (Fd and Pad together
// are the kernel's epoll_data union).
func setID(ev *unix.EpollEvent, id uint64) {
	ev.Fd = int32(uint32(id))
	ev.Pad = int32(uint32(id >> 32))
}

func eventID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// add registers fd armed for one readiness report.
func (p *poller) add(fd int, id uint64) error {
	ev := unix.EpollEvent{Events: pollEvents}
	setID(&ev, id)
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// arm re-enables one readiness report for fd.
func (p *poller) arm(fd int, id uint64) error {
	ev := unix.EpollEvent{Events: pollEvents}
	setID(&ev, id)
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
}

// del unregisters fd; call before closing it.
func (p *poller) del(fd int) error {
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

// wait blocks until at least one event and returns the ready keys' events
// (valid until the next wait). woken reports that the wake eventfd fired.
func (p *poller) wait() (ready []unix.EpollEvent, woken bool, err error) {
	for {
		n, err := unix.EpollWait(p.epfd, p.events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		ready = p.events[:n]
		for i := range ready {
			if eventID(&ready[i]) == wakeID {
				woken = true
			}
		}
		return ready, woken, nil
	}
}

// wake interrupts wait from any goroutine.
func (p *poller) wake() {
	var one = [8]byte{1}
	_, _ = unix.Write(p.evfd, one[:])
}

// close releases both descriptors; wait must have returned for good.
func (p *poller) close() {
	unix.Close(p.epfd)
	unix.Close(p.evfd)
}
