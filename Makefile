# liblocking: build and install the C library like any other.
#
#   make                        cargo build --release (library and lockrun),
#                               plus the link target/release/liblocking.so.0
#                               -> liblocking.so, so that programs linked
#                               against the uninstalled build with
#                               -L target/release -llocking find the SONAME
#   make install                install into $(DESTDIR)$(PREFIX)
#   make uninstall              remove what install installed
#
# Variables (override on the command line: make install PREFIX=/usr):
#   PREFIX      /usr/local
#   LIBDIR      $(PREFIX)/lib           (e.g. /usr/lib/x86_64-linux-gnu)
#   INCLUDEDIR  $(PREFIX)/include
#   BINDIR      $(PREFIX)/bin
#   MANDIR      $(PREFIX)/share/man     (lockrun.1 goes to $(MANDIR)/man1)
#   PKGCONFIGDIR $(LIBDIR)/pkgconfig
#   DESTDIR     staging root for packagers (not written into locking.pc)
#   CARGO       cargo
#   CARGO_TARGET_DIR  where cargo builds (default: target)
#
# install does not build when the release artifacts are up to date, so
# `make && sudo make install` runs cargo as the user only. Run ldconfig
# after installing into a system library directory.

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR ?=

CARGO ?= cargo
CARGO_TARGET_DIR ?= target
INSTALL ?= install

# The version comes from Cargo.toml; the SONAME major from the version
# (build.rs links with -soname liblocking.so.$(MAJOR)).
VERSION := $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
MAJOR := $(firstword $(subst ., ,$(VERSION)))
SONAME := liblocking.so.$(MAJOR)
REALNAME := liblocking.so.$(VERSION)

# What liblocking.a needs besides itself, as printed by
#   cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs
# (tests/install.rs checks that this list is complete).
LIBS_PRIVATE := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

REL := $(CARGO_TARGET_DIR)/release
ARTIFACTS := $(REL)/liblocking.so $(REL)/liblocking.a $(REL)/lockrun
SOURCES := Cargo.toml $(wildcard Cargo.lock) build.rs cbindgen.toml locking.map \
	$(shell find src core/src -name '*.rs') core/Cargo.toml

# Paths under $(PREFIX) are written relative to ${prefix} in locking.pc, so
# the file stays right if the tree is moved (pkg-config --define-prefix).
pc_path = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

.PHONY: all lib install uninstall

all: lib

# cargo writes liblocking.so only; a program linked with -llocking asks the
# loader for the SONAME, so the uninstalled build gets a link of that name.
lib:
	$(CARGO) build --release --target-dir $(CARGO_TARGET_DIR)
	ln -sfn liblocking.so $(REL)/$(SONAME)

$(ARTIFACTS): $(SOURCES)
	$(CARGO) build --release --target-dir $(CARGO_TARGET_DIR)
	ln -sfn liblocking.so $(REL)/$(SONAME)

install: $(ARTIFACTS) include/locking.h include/locking.hpp locking.pc.in man/lockrun.1
	@test -n "$(VERSION)" || { echo "no version in Cargo.toml" >&2; exit 1; }
	$(INSTALL) -d "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(INCLUDEDIR)" \
		"$(DESTDIR)$(PKGCONFIGDIR)" "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(MANDIR)/man1"
	$(INSTALL) -m 0755 $(REL)/liblocking.so "$(DESTDIR)$(LIBDIR)/$(REALNAME)"
	ln -sf $(REALNAME) "$(DESTDIR)$(LIBDIR)/$(SONAME)"
	ln -sf $(SONAME) "$(DESTDIR)$(LIBDIR)/liblocking.so"
	$(INSTALL) -m 0644 $(REL)/liblocking.a "$(DESTDIR)$(LIBDIR)/liblocking.a"
	$(INSTALL) -m 0644 include/locking.h include/locking.hpp "$(DESTDIR)$(INCLUDEDIR)/"
	$(INSTALL) -m 0755 $(REL)/lockrun "$(DESTDIR)$(BINDIR)/lockrun"
	$(INSTALL) -m 0644 man/lockrun.1 "$(DESTDIR)$(MANDIR)/man1/lockrun.1"
	sed -e 's|@PREFIX@|$(PREFIX)|g' \
	    -e 's|@LIBDIR@|$(call pc_path,$(LIBDIR))|g' \
	    -e 's|@INCLUDEDIR@|$(call pc_path,$(INCLUDEDIR))|g' \
	    -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@LIBS_PRIVATE@|$(LIBS_PRIVATE)|g' \
	    locking.pc.in > "$(DESTDIR)$(PKGCONFIGDIR)/locking.pc.tmp"
	chmod 0644 "$(DESTDIR)$(PKGCONFIGDIR)/locking.pc.tmp"
	mv -f "$(DESTDIR)$(PKGCONFIGDIR)/locking.pc.tmp" "$(DESTDIR)$(PKGCONFIGDIR)/locking.pc"

uninstall:
	rm -f "$(DESTDIR)$(LIBDIR)/$(REALNAME)" "$(DESTDIR)$(LIBDIR)/$(SONAME)" \
	      "$(DESTDIR)$(LIBDIR)/liblocking.so" "$(DESTDIR)$(LIBDIR)/liblocking.a" \
	      "$(DESTDIR)$(INCLUDEDIR)/locking.h" "$(DESTDIR)$(INCLUDEDIR)/locking.hpp" \
	      "$(DESTDIR)$(PKGCONFIGDIR)/locking.pc" "$(DESTDIR)$(BINDIR)/lockrun" \
	      "$(DESTDIR)$(MANDIR)/man1/lockrun.1"
