PUSHDIVERT(-1)
dnl
dnl btprelay - sendmail mailer for btprelay-transport(8): delivers to the
dnl SMTP relay of a SAP BTP MAIL destination, through the Connectivity proxy
dnl for OnPremise destinations. See README beside this file.
dnl
dnl Use it in one of two ways (after every FEATURE line of sendmail.mc):
dnl  1. copy this file to sendmail's cf/mailer/ directory (Debian:
dnl     /usr/share/sendmail/cf/mailer/btprelay.m4) and add MAILER(`btprelay');
dnl  2. or, leaving cf/mailer/ alone, at the end of sendmail.mc:
dnl     MAILER_DEFINITIONS
dnl     include(`/path/to/btprelay.m4')
dnl Route domains to destinations with FEATURE(`mailertable') and lines like
dnl     corp.example	btprelay:MAIL_ONPREM
dnl The host part, after "btprelay:", is the destination name ($h).
dnl
dnl Settings (define them before the MAILER or include line):
dnl  BTPRELAY_MAILER_PATH  the program; default
dnl                        /usr/libexec/btprelay/btprelay-transport
dnl  BTPRELAY_CONFIG       a configuration file other than the default
dnl                        /etc/btprelay/btprelay.conf (adds -c FILE)
dnl  BTPRELAY_MAILER_ARGS  the whole argument vector, replacing the default
dnl                        btprelay-transport [-c FILE] -q $i -s ${msg_size}
dnl                          -f $g -d $h -- $u
dnl                        $i queue id, ${msg_size} message size, $g envelope
dnl                        sender (empty for the null sender), $h destination,
dnl                        $u the recipients (one argument each, with F=m)
dnl  BTPRELAY_MAILER_USER  U=, who runs the transport: a user name (with its
dnl                        primary group) or uid:gid; default btprelay. A
dnl                        user:group pair of names is not accepted by
dnl                        sendmail 8.17. Never root.
dnl  BTPRELAY_MAILER_WAIT  W=, how long sendmail waits for the transport;
dnl                        default 15m. Keep it above delivery_deadline in
dnl                        btprelay.conf (600 s by default), so that the
dnl                        transport always ends first, deferring on its own.
dnl  BTPRELAY_MAILER_FLAGS flags added to the default DFMhmnu (or use
dnl                        MODIFY_MAILER_FLAGS with the prefix BTPRELAY)
dnl  BTPRELAY_MAILER_MAX   M=, the largest message in bytes; default none
dnl  BTPRELAY_MAILER_QGRP  Q=, a queue group
dnl
dnl Flags: D F M add Date:, From: and Message-Id: headers when missing, as
dnl the smtp mailers do; h keeps the case of $h (destination names are case
dnl sensitive; without h, MAIL_ONPREM would become mail_onprem); m one run
dnl for all recipients of one destination; n no Unix "From " line; u keeps
dnl the case of localparts.
dnl Not set, on purpose: X (the transport dot-stuffs itself); l (this is not
dnl final delivery); e (deliver at once, not only in queue runs); 7 (8-bit
dnl bodies pass unchanged); 8 and 9 (no MIME conversions: a relay leaves the
dnl body alone, DKIM signatures included); q (VRFY answers 252: only the
dnl relay knows its users); P (no Return-Path: header, that is final
dnl delivery's job); S (U= alone sets both the real and effective ids).
dnl
dnl T=DNS/RFC822/X-Unix: the transport ends with a sysexits code, which
dnl sendmail reports as "Diagnostic-Code: X-Unix; N". sendmail queues on 75
dnl (EX_TEMPFAIL) and returns the message on 69 (EX_UNAVAILABLE); the
dnl transport's output line, which starts with the enhanced status code,
dnl goes into the transcript of the bounce.
dnl
ifdef(`BTPRELAY_MAILER_PATH',,
	`define(`BTPRELAY_MAILER_PATH', `/usr/libexec/btprelay/btprelay-transport')')
_DEFIFNOT(`BTPRELAY_MAILER_FLAGS', `')
ifdef(`BTPRELAY_MAILER_ARGS',,
	`define(`BTPRELAY_MAILER_ARGS', `btprelay-transport'ifdef(`BTPRELAY_CONFIG', ` -c 'BTPRELAY_CONFIG)` -n -q $i -s ${msg_size} -f $g -d $h -- $u')')
ifdef(`BTPRELAY_MAILER_USER',,
	`define(`BTPRELAY_MAILER_USER', `btprelay')')
ifdef(`BTPRELAY_MAILER_WAIT',,
	`define(`BTPRELAY_MAILER_WAIT', `15m')')
define(`_BTPRELAY_QGRP', `ifelse(defn(`BTPRELAY_MAILER_QGRP'),`',`', ` Q=BTPRELAY_MAILER_QGRP,')')dnl

POPDIVERT

##################################################
###   btprelay Mailer specification (SAP BTP)  ###
##################################################

VERSIONID(`btprelay.m4 0.1.0')

Mbtprelay,	P=BTPRELAY_MAILER_PATH, F=_MODMF_(CONCAT(`DFMhmnu', BTPRELAY_MAILER_FLAGS), `BTPRELAY'), S=EnvFromSMTP/HdrFromSMTP, R=EnvToSMTP,
		ifdef(`BTPRELAY_MAILER_MAX', `M=BTPRELAY_MAILER_MAX, ')T=DNS/RFC822/X-Unix, U=BTPRELAY_MAILER_USER, W=BTPRELAY_MAILER_WAIT,_BTPRELAY_QGRP
		A=BTPRELAY_MAILER_ARGS
