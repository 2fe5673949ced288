/*
 * mbedTLS 3.6 configuration of the device: MicroPython's
 * extmod/mbedtls/mbedtls_config_common.h as the openmv profile describes it
 * (docs/device-behaviour.md, "The device's mbedTLS build"), plus DTLS as
 * MICROPY_PY_SSL_DTLS enables it. This file REPLACES mbedTLS's default
 * mbedtls_config.h (MBEDTLS_CONFIG_FILE), as MicroPython's does: whatever is
 * not defined here is off (no TLS 1.3, no PSA, no RSA-PSS, no ChaCha20/CCM/
 * DHE, no session tickets, no EMS, no encrypt-then-MAC, no ALPN, no
 * MBEDTLS_SSL_KEEP_PEER_CERTIFICATE).
 *
 * Lines marked HOST-ONLY exist only so the test program can run on a PC;
 * none of them changes what is negotiated or verified.
 */
#ifndef DEVTLS_DEVICE_MBEDTLS_CONFIG_H
#define DEVTLS_DEVICE_MBEDTLS_CONFIG_H

/* Options */
#define MBEDTLS_HAVE_TIME
#define MBEDTLS_HAVE_TIME_DATE
#define MBEDTLS_DEPRECATED_REMOVED
#define MBEDTLS_AES_ROM_TABLES
#define MBEDTLS_CIPHER_MODE_CBC
#define MBEDTLS_PKCS1_V15
#define MBEDTLS_SHA256_SMALLER
#define MBEDTLS_SSL_SERVER_NAME_INDICATION
#define MBEDTLS_SSL_PROTO_TLS1   /* ignored by 3.6, defined by MicroPython */
#define MBEDTLS_SSL_PROTO_TLS1_1 /* ignored by 3.6, defined by MicroPython */
#define MBEDTLS_SSL_PROTO_TLS1_2

/* Curves */
#define MBEDTLS_ECP_DP_SECP192R1_ENABLED
#define MBEDTLS_ECP_DP_SECP224R1_ENABLED
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_DP_SECP384R1_ENABLED
#define MBEDTLS_ECP_DP_SECP521R1_ENABLED
#define MBEDTLS_ECP_DP_SECP192K1_ENABLED
#define MBEDTLS_ECP_DP_SECP224K1_ENABLED
#define MBEDTLS_ECP_DP_SECP256K1_ENABLED

/* Key exchanges. (MBEDTLS_CAN_ECDH, MBEDTLS_PK_CAN_ECDSA_SIGN and
 * MBEDTLS_PK_HAVE_ECC_KEYS follow from these in 3.6's
 * config_adjust_legacy_crypto.h; device_peer.c checks they are set.) */
#define MBEDTLS_KEY_EXCHANGE_RSA_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED
#define MBEDTLS_KEY_EXCHANGE_PSK_ENABLED

/* Buffers */
#define MBEDTLS_SSL_MAX_CONTENT_LEN (16384)
#define MBEDTLS_SSL_IN_CONTENT_LEN (16384)
#define MBEDTLS_SSL_OUT_CONTENT_LEN (4096)

/* Modules */
#define MBEDTLS_AES_C
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C
#define MBEDTLS_BASE64_C
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_CIPHER_C
#define MBEDTLS_CTR_DRBG_C
#define MBEDTLS_ECDH_C
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ECP_C
#define MBEDTLS_ENTROPY_C
#define MBEDTLS_ERROR_C
#define MBEDTLS_GCM_C
#define MBEDTLS_MD_C
#define MBEDTLS_MD5_C
#define MBEDTLS_OID_C
#define MBEDTLS_PEM_PARSE_C
#define MBEDTLS_PKCS5_C
#define MBEDTLS_PK_C
#define MBEDTLS_PK_PARSE_C
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_RSA_C
#define MBEDTLS_SHA1_C
#define MBEDTLS_SHA224_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA384_C
#define MBEDTLS_SHA512_C
#define MBEDTLS_SSL_CLI_C
#define MBEDTLS_SSL_SRV_C
#define MBEDTLS_SSL_TLS_C
#define MBEDTLS_X509_CRT_PARSE_C
#define MBEDTLS_X509_USE_C

/* DTLS, as MICROPY_PY_SSL_DTLS enables it */
#define MBEDTLS_SSL_PROTO_DTLS
#define MBEDTLS_SSL_DTLS_ANTI_REPLAY
#define MBEDTLS_SSL_DTLS_HELLO_VERIFY
#define MBEDTLS_SSL_COOKIE_C

/* HOST-ONLY: the device clock. mbedtls_time() goes through a pointer the
 * peer sets with mbedtls_platform_set_time() (--time UNIX|unset), as a
 * board's RTC would answer. Entropy comes from the host's platform source
 * (MBEDTLS_NO_PLATFORM_ENTROPY stays undefined; boards use a hardware
 * source instead), so no define is needed for it. */
#define MBEDTLS_PLATFORM_TIME_ALT

/* HOST-ONLY, speed: faster arithmetic for the NIST curves and bignums on a
 * PC (the batch `verify` mode checks tens of thousands of chains). Both
 * compute the same results as the device's generic code; neither changes
 * what is offered, accepted or refused. */
#define MBEDTLS_ECP_NIST_OPTIM
#define MBEDTLS_HAVE_ASM

/* mbedTLS 3.6 includes check_config.h itself, after its adjust headers
 * (MicroPython's file includes it here, which 3.6 makes redundant). */

#endif /* DEVTLS_DEVICE_MBEDTLS_CONFIG_H */
