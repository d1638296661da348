"""A sans-IO implementation of the Noise Protocol Framework, revision 34.

Pure computation: this package never touches sockets, files, clocks or event
loops. Feed it bytes, get bytes back::

    initiator = HandshakeState("Noise_NN_25519_AESGCM_SHA256", initiator=True)
    responder = HandshakeState("Noise_NN_25519_AESGCM_SHA256", initiator=False)
    responder.read_message(initiator.write_message())
    initiator.read_message(responder.write_message())
    alice, bob = initiator.into_transport(), responder.into_transport()
    assert bob.decrypt(alice.encrypt(b"hello")) == b"hello"
"""

from handshake.ciphers import AESGCM, CHACHAPOLY, CipherFunction
from handshake.cipherstate import MAX_NONCE, CipherState
from handshake.dh import X25519, DHFunction, KeyPair
from handshake.errors import (
    DecryptError,
    HandshakeError,
    HandshakeFinishedError,
    HandshakeNotFinishedError,
    InvalidBufferError,
    InvalidKeyError,
    InvalidNonceError,
    InvalidPublicKeyError,
    MalformedMessageError,
    MessageTooLongError,
    MissingKeyError,
    MissingPskError,
    NonceExhaustedError,
    OneWayPatternError,
    PeerError,
    ProtocolNameError,
    UnusedKeyError,
    UsageError,
    WrongTurnError,
)
from handshake.handshakestate import HandshakeState
from handshake.hashes import BLAKE2B, BLAKE2S, SHA256, SHA512, HashFunction
from handshake.patterns import PATTERNS, HandshakePattern, Token
from handshake.protocol import NoiseProtocol
from handshake.symmetricstate import SymmetricState
from handshake.transport import MAX_MESSAGE_LEN, TransportState

__all__ = [
    "AESGCM",
    "BLAKE2B",
    "BLAKE2S",
    "CHACHAPOLY",
    "MAX_MESSAGE_LEN",
    "MAX_NONCE",
    "PATTERNS",
    "SHA256",
    "SHA512",
    "X25519",
    "CipherFunction",
    "CipherState",
    "DHFunction",
    "DecryptError",
    "HandshakeError",
    "HandshakeFinishedError",
    "HandshakeNotFinishedError",
    "HandshakePattern",
    "HandshakeState",
    "HashFunction",
    "InvalidBufferError",
    "InvalidKeyError",
    "InvalidNonceError",
    "InvalidPublicKeyError",
    "KeyPair",
    "MalformedMessageError",
    "MessageTooLongError",
    "MissingKeyError",
    "MissingPskError",
    "NoiseProtocol",
    "NonceExhaustedError",
    "OneWayPatternError",
    "PeerError",
    "ProtocolNameError",
    "SymmetricState",
    "Token",
    "TransportState",
    "UnusedKeyError",
    "UsageError",
    "WrongTurnError",
]
