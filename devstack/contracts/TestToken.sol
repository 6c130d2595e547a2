// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title TestErc20
/// @notice The 6-decimal ERC-20 core shared by the local chains' tokens. Installed with
///         `anvil_setCode` at the canonical USDC/USDT addresses, so it must hold no constructor
///         state: every value it needs is a constant or lives in storage that starts at zero.
/// @dev Storage layout is part of the contract with the test suite:
///      slot 0 = balances (a holder's balance is at keccak(pad32(holder) || pad32(0))),
///      slot 1 = allowances, slot 2 = totalSupply. Derived tokens add their slots after these.
abstract contract TestErc20 {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    uint256 public totalSupply;

    uint8 public constant decimals = 6;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    function name() public pure virtual returns (string memory);

    function symbol() public pure virtual returns (string memory);

    /// @notice Open mint: anyone may create tokens. Emits Transfer(0, to, amount) like a bridge mint.
    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _move(msg.sender, to, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= amount, "TestToken: insufficient allowance");
            allowance[from][msg.sender] = allowed - amount;
        }
        _move(from, to, amount);
        return true;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        _approve(msg.sender, spender, amount);
        return true;
    }

    function _approve(address owner, address spender, uint256 amount) internal {
        allowance[owner][spender] = amount;
        emit Approval(owner, spender, amount);
    }

    function _move(address from, address to, uint256 amount) internal {
        uint256 held = balanceOf[from];
        require(held >= amount, "TestToken: insufficient balance");
        balanceOf[from] = held - amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }
}

/// @title TestToken
/// @notice The plain test ERC-20 (the local USDT): transfer, approve, transferFrom, open mint.
contract TestToken is TestErc20 {
    function name() public pure override returns (string memory) {
        return "Test USD";
    }

    function symbol() public pure override returns (string memory) {
        return "TUSD";
    }
}
