// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title TransferEmitter
/// @notice A look-alike for negative tests: emits Transfer-shaped logs with arbitrary arguments
///         from its own address, which a verifier must reject because it is not the token.
contract TransferEmitter {
    /// ERC-20 shape: 3 topics (topic0, from, to), 32-byte data (value).
    event Transfer(address indexed from, address indexed to, uint256 value);

    bytes32 private constant TRANSFER_TOPIC =
        0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef;

    /// @notice Emits an ERC-20 style Transfer(from, to, value): 3 topics, 32-byte data.
    function emitTransfer(address from, address to, uint256 value) external {
        emit Transfer(from, to, value);
    }

    /// @notice Emits an ERC-721 style Transfer: same topic0, 4 topics (tokenId indexed), empty data.
    function emitNftTransfer(address from, address to, uint256 tokenId) external {
        assembly {
            log4(0, 0, TRANSFER_TOPIC, from, to, tokenId)
        }
    }

    /// @notice Emits a 3-topic Transfer whose data is `data` verbatim (any length, e.g. 0 or 64
    ///         bytes), to test that only 32-byte data is accepted as a value.
    function emitRawTransfer(address from, address to, bytes calldata data) external {
        assembly {
            let ptr := mload(0x40)
            calldatacopy(ptr, data.offset, data.length)
            log3(ptr, data.length, TRANSFER_TOPIC, from, to)
        }
    }
}
